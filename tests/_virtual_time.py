"""An event loop on virtual time: real sockets, a clock that moves only when the loop is idle.

``loop.time()`` starts at ``time.monotonic()`` and advances only when the
loop has nothing to run and no socket is ready: then it jumps to the next
timer instead of sleeping. CPU time costs no virtual time, so a loaded or
slow machine changes how long a test takes, never what it measures. Real
I/O still happens (aiohttp servers and clients on 127.0.0.1 in the same
loop): a write on loopback is readable at the other end by the next poll
(the kernel delivers it within the ``send``).

For tests whose subject is a real-time scenario (pacing against a token
bucket): give the code under test ``loop.time`` as its clock (e.g.
``Seawall(clock=loop.time)``). Nothing here may wait for another thread or
process: time would jump past it.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Coroutine, Iterator
from types import SimpleNamespace
from typing import Any, TypeVar

T = TypeVar("T")


class _Selector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        ready: list[tuple[Any, int]] = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer at all: only I/O can wake the loop
            return list(super().select(None))
        assert self.loop is not None
        self.loop.now += timeout  # idle: on to the next timer, at once
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` moves by the timers it waits for, not by CPU."""

    def __init__(self) -> None:
        selector = _Selector()
        super().__init__(selector)
        selector.loop = self
        self.now = time.monotonic()

    def time(self) -> float:
        return self.now

    def time_module(self) -> SimpleNamespace:
        """A stand-in for the ``time`` module on this loop's clock, for ``monkeypatch``:
        ``monotonic()`` is ``time()``, and ``time()`` the wall clock moving with it (a
        date a fake server sends and the date seawall reads it against agree)."""
        wall = time.time() - self.now
        return SimpleNamespace(monotonic=self.time, time=lambda: wall + self.now)


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh ``VirtualTimeLoop``, then close it."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def loop_fixture() -> Iterator[asyncio.AbstractEventLoop]:
    """The body of a ``loop`` fixture that puts a module's async tests (and the
    ``aiohttp_server``/``upstream`` fixtures) on a ``VirtualTimeLoop``."""
    loop = VirtualTimeLoop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)
