"""Test mode's primitives, which the request path uses: the switch, the wait, the cap.

The public API is ``seawall.testing`` (a tool: the library never imports it),
which re-exports these; they live here so that the request path depends on a
mechanism, not on the tools.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

__all__ = ["cap_attempts", "is_testing", "mode", "set_testing", "sleep"]

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
