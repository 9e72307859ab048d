"""Deadlines: an absolute end time carried in a contextvar.

``with seawall.deadline(2.5):`` bounds every call seawall makes inside the
block (in this task and the tasks it starts) to 2.5 s from now; nested
deadlines can only shorten it. The ASGI middleware sets one per inbound
request. Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
from collections.abc import Iterator

__all__ = ["current_deadline", "deadline", "remaining"]

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "seawall_deadline", default=None
)


#: The variable itself, for the aiohttp middleware's lean path (a call costs more).
DEADLINE_VAR = _DEADLINE


def current_deadline() -> float | None:
    """The absolute ``time.monotonic()`` deadline in force, or ``None``."""
    return _DEADLINE.get()


def remaining() -> float | None:
    """Seconds left before the deadline in force (may be negative), or ``None``."""
    end = _DEADLINE.get()
    return None if end is None else end - time.monotonic()


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[float | None]:
    """Bound every seawall call inside the block to ``seconds`` from now.

    ``None`` changes nothing. A deadline already in force that ends sooner
    wins. Yields the absolute deadline now in force.
    """
    if seconds is not None and (not isinstance(seconds, int | float) or math.isnan(seconds)):
        msg = f"deadline({seconds!r}): give a number of seconds, or None for no deadline"
        raise TypeError(msg)
    outer = _DEADLINE.get()
    end = outer if seconds is None else time.monotonic() + max(0.0, float(seconds))
    if outer is not None and end is not None:
        end = min(outer, end)
    token = _DEADLINE.set(end)
    try:
        yield end
    finally:
        _DEADLINE.reset(token)
