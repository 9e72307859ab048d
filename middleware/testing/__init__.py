"""Test mode for our users' test suites (and ours): no waiting, fewer attempts.

::

    @pytest.fixture(autouse=True)
    def _no_waits():
        seawall.testing.set_testing(True)       # every backoff, Retry-After and
        yield                                   # cooldown wait becomes instant
        seawall.testing.set_testing(False)

    with seawall.testing.mode(attempts=1):    # and never retry
        ...

Decisions stay the same in test mode: a wait longer than the deadline still
stops retries; it is only the sleeping that is skipped.

The fake OpenAI/Anthropic API for offline tests lives here too (defined in
``seawall.testing.fake_llm``, imported on first use so that ``import seawall`` does
not load ``aiohttp.web``)::

    async with seawall.testing.FakeProvider() as fake:
        fake.then(seawall.testing.openai_error(429, "rate_limit_exceeded"))
        client = openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="sk-test")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seawall._testmode import cap_attempts, is_testing, mode, set_testing, sleep

if TYPE_CHECKING:
    from seawall.testing.fake_llm import FakeProvider, anthropic_error, openai_error, status

__all__ = [
    "FakeProvider",
    "anthropic_error",
    "cap_attempts",
    "is_testing",
    "mode",
    "openai_error",
    "set_testing",
    "sleep",
    "status",
]

#: Names served from ``seawall.testing.fake_llm`` on first access.
_FAKE_PROVIDER_NAMES = frozenset({"FakeProvider", "anthropic_error", "openai_error", "status"})


def __getattr__(name: str) -> object:
    if name in _FAKE_PROVIDER_NAMES:
        from seawall.testing import fake_llm  # lazily: it needs aiohttp.web

        return getattr(fake_llm, name)
    msg = f"module 'seawall.testing' has no attribute {name!r}"
    raise AttributeError(msg)
