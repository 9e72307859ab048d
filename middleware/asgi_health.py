"""Who may see the ASGI health endpoint's detail: ``health_detail`` checked and asked.

The detail (every upstream, breaker state and plugin fault) is a map of the
service's dependencies, so it is shown only on an unmistakable yes: the
option ``True``, or a callable of the ASGI scope returning ``True`` itself
(not merely something truthy). A callable that raises, or returns an
awaitable, says no for that request; the fault is logged, redacted, at most
once per ``FAULT_LOG_INTERVAL``. An ``async def`` is refused when the app is
built: its coroutine is truthy and cannot be awaited here.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from seawall.redact import describe_exception

__all__ = ["FAULT_LOG_INTERVAL", "DetailGate", "check_health_detail"]

log = logging.getLogger("seawall.asgi")

Scope = MutableMapping[str, Any]
DetailRule = bool | Callable[[Scope], bool]

#: At most one log line per this many seconds about a faulty ``health_detail``.
FAULT_LOG_INTERVAL = 60.0

#: Longest text of a ``health_detail`` fault in its log line.
_DESCRIBED = 300


def _is_async(rule: object) -> bool:
    """Whether calling ``rule`` gives something to await (an ``async def``, a partial
    of one, an object whose ``__call__`` is one, an async generator function)."""
    call = getattr(type(rule), "__call__", None)  # noqa: B004 - the class's, not the instance's
    return any(
        inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn) for fn in (rule, call)
    )


def check_health_detail(rule: object) -> DetailRule:
    """``rule`` as ``health_detail`` takes it; ``TypeError`` saying what to give instead."""
    if isinstance(rule, bool):
        return rule
    if not callable(rule):
        msg = (
            f"health_detail={rule!r}: give True, False, or a callable "
            "that takes the ASGI scope and returns whether to show the detail"
        )
        raise TypeError(msg)
    if _is_async(rule):
        msg = (
            f"health_detail={rule!r} is an async function: its coroutine would be "
            "truthy and is never awaited; give a plain def that returns True or False "
            "(decide from the scope: client address, a header your proxy sets), or keep "
            "the detail off and serve sw.health() from an endpoint behind your own "
            "authentication"
        )
        raise TypeError(msg)
    return rule


class DetailGate:
    """Asks ``health_detail`` for one request; counts and logs (rate-limited) its faults."""

    __slots__ = ("_clock", "_logged_at", "_unlogged", "faults", "rule")

    def __init__(self, rule: DetailRule, clock: Callable[[], float] = time.monotonic) -> None:
        self.rule = rule
        self.faults = 0
        self._clock = clock
        self._logged_at: float | None = None
        self._unlogged = 0

    def allows(self, scope: Scope) -> bool:
        """Whether this request may see the detail: only on ``True`` itself."""
        rule = self.rule
        if not callable(rule):
            return rule is True
        try:
            answer = rule(scope)
        except Exception as exc:  # the app's code: no detail, and say so
            self._fault(f"raised {describe_exception(exc, _DESCRIBED)}")
            return False
        if inspect.isawaitable(answer):
            close = getattr(answer, "close", None)
            if callable(close):
                close()  # never awaited: no "was never awaited" warning later
            self._fault(f"returned an awaitable ({type(answer).__name__}), not True or False")
            return False
        return answer is True

    def _fault(self, what: str) -> None:
        self.faults += 1
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < FAULT_LOG_INTERVAL:
            self._unlogged += 1
            return
        skipped, self._unlogged, self._logged_at = self._unlogged, 0, now
        log.error(
            "health_detail %s: the health detail is not shown to this request "
            "(%d more such faults since the last line; at most one line per %.0fs)",
            what,
            skipped,
            FAULT_LOG_INTERVAL,
        )
