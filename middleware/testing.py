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
``seawall.fake_llm``, imported on first use so that ``import seawall`` does
not load ``aiohttp.web``)::

    async with seawall.testing.FakeProvider() as fake:
        fake.then(seawall.testing.openai_error(429, "rate_limit_exceeded"))
        client = openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="sk-test")
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seawall.fake_llm import FakeProvider, anthropic_error, openai_error, status

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

#: Names served from ``seawall.fake_llm`` on first access.
_FAKE_PROVIDER_NAMES = frozenset({"FakeProvider", "anthropic_error", "openai_error", "status"})


def __getattr__(name: str) -> object:
    if name in _FAKE_PROVIDER_NAMES:
        from seawall import fake_llm

        return getattr(fake_llm, name)
    msg = f"module 'seawall.testing' has no attribute {name!r}"
    raise AttributeError(msg)


_state: dict[str, object] = {"on": False, "attempts": None}


def set_testing(on: bool, *, attempts: int | None = None) -> None:
    """Turn test mode on or off.

    :param attempts: cap every policy's ``max_attempts`` at this number
        (``None`` keeps the policies' own).
    """
    if attempts is not None and (
        isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
    ):
        msg = f"set_testing(attempts={attempts!r}): give a whole number >= 1, or None"
        raise ValueError(msg)
    _state["on"] = bool(on)
    _state["attempts"] = attempts if on else None


def is_testing() -> bool:
    """True while test mode is on."""
    return bool(_state["on"])


@contextlib.contextmanager
def mode(*, attempts: int | None = None) -> Iterator[None]:
    """Test mode for the duration of the block, restoring what was before."""
    before = dict(_state)
    set_testing(True, attempts=attempts)
    try:
        yield
    finally:
        _state.update(before)


def cap_attempts(max_attempts: int) -> int:
    """``max_attempts``, capped in test mode when a cap was given."""
    cap = _state["attempts"]
    if isinstance(cap, int):
        return min(cap, max_attempts)
    return max_attempts


async def sleep(seconds: float) -> None:
    """``asyncio.sleep``, except instant (one loop turn) in test mode."""
    await asyncio.sleep(0 if _state["on"] else seconds)
