"""Old home of the fake provider: ``seawall.testing.fake_llm`` defines it now.

Kept so that ``from seawall.fake_llm import FakeProvider`` goes on working.
"""

from __future__ import annotations

from seawall.testing.fake_llm import FakeProvider, anthropic_error, openai_error, status

__all__ = ["FakeProvider", "anthropic_error", "openai_error", "status"]
