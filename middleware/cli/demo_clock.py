"""Simulated time for ``seawall demo --simulated``: an event loop whose clock jumps.

``SimulatedLoop`` is a selector event loop whose ``time()`` is a counter that
moves only when the loop has nothing to do: when no callback is ready and no
socket has data, it jumps to the next timer instead of sleeping. Sockets stay
real (the demo's upstreams still listen on 127.0.0.1), only waiting is free.
So a run of ``duration`` simulated seconds takes as long as its work does,
and the numbers do not depend on how loaded the machine is: time does not pass
while the process computes, only while everything waits.

Before each jump the loop gives the sockets a short real grace (``GRACE``) to
show data that is in flight on the loopback, so a reply is not mistaken for
silence. Every clock seawall reads must be the loop's: the demo gives
``Seawall(clock=loop.time)``.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Mapping
from typing import Any

__all__ = ["GRACE", "SimulatedLoop"]

#: Real seconds the loop waits for socket activity before it jumps ahead.
GRACE = 0.0005


class _JumpingSelector(selectors.BaseSelector):
    """Wraps a real selector: a wait with nothing to see moves the loop's clock instead."""

    def __init__(self, inner: selectors.BaseSelector, loop: SimulatedLoop) -> None:
        self._inner = inner
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._inner.select(0)
        if events or timeout == 0:
            return events
        if timeout is None:  # no timer at all: only a socket can wake the loop
            return self._inner.select(None)
        events = self._inner.select(min(GRACE, timeout))
        if not events:
            self._loop.advance(timeout)
        return events


class SimulatedLoop(asyncio.SelectorEventLoop):
    """A selector event loop on simulated time (see the module's docstring)."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        inner = selectors.DefaultSelector()
        super().__init__(selector=_JumpingSelector(inner, self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock ahead by ``seconds`` (never back)."""
        self._now += max(0.0, seconds)
