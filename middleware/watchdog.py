"""Cheap per-attempt timeouts: one sweeping timer per event loop, not one per attempt.

``asyncio.timeout()`` schedules and cancels a timer handle for every attempt,
which was a third of seawall's success-path cost. Attempt limits are usually
long (30 s) and seldom reached, so they do not need a timer each: watching an
attempt is one dict insertion (task -> deadline) and ending it one removal.

One timer per loop sweeps the watched tasks. It is set for the soonest
deadline it knows of (a new, sooner deadline moves it), and each sweep
cancels every task whose deadline falls before the next ``GRAIN`` seconds.
So the soonest limit is enforced on time and others at most ``GRAIN``
seconds *early*, never late: a deadline is never overrun. The engine uses
this only for limits of at least ``MIN_LIMIT`` seconds (at most 10 % early)
and ``asyncio.timeout`` for shorter ones.

A sweep cancels a task only when no other cancellation is pending on it, and
remembers that it did; the engine turns that cancellation into
``TimeoutError`` exactly as ``asyncio.timeout`` does (``Task.uncancel``), so
a cancellation from outside is never mistaken for a timeout.

Attempts nest: a protected function may itself make protected calls (or
requests through the aiohttp middleware) in the same task. The task is then
watched for the sooner of the two deadlines while the inner attempt runs, the
enclosing deadline is watched again when it ends, and a sweep's cancellation
is claimed only by the attempt whose deadline it was: an inner attempt that
is cut by the enclosing attempt's limit lets the cancellation through to it.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["GRAIN", "LAST", "MIN_LIMIT", "Watchdog", "current_task", "of", "running"]

#: Seconds: a sweep also cancels what is due within this much of it.
GRAIN = 0.1

#: Shortest limit handled here; shorter ones use ``asyncio.timeout``.
MIN_LIMIT = 1.0

Task = asyncio.Task[Any]


class Watchdog:
    """The watched attempts of one event loop.

    ``watch`` and ``done`` are all a caller needs; the aiohttp middleware's
    lean path writes them out (its tasks are never being cancelled when
    watched), so what they change is public: keep the two in step.
    """

    __slots__ = ("_fired", "_handle", "_loop", "base", "deadlines", "next_at", "stock")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak, like the sweep's handle below: the watchdogs are kept per loop in a
        # WeakKeyDictionary, and a value holding its key would keep every loop
        # ever used alive (``asyncio.run`` per job leaked a loop and ~4 KiB a run).
        self._loop = weakref.ref(loop)
        #: ``loop.time()`` is ``time.monotonic()`` (every stock asyncio loop): call it directly.
        self.stock = getattr(type(loop), "time", None) is asyncio.BaseEventLoop.time
        #: Each watched task and when it is due, on ``loop.time()``.
        self.deadlines: dict[Task, float] = {}
        #: ``cancelling()`` of watched tasks that were being cancelled already.
        self.base: dict[Task, int] = {}
        #: Tasks a sweep cancelled: the ``cancelling()`` count to undo to, and the deadline.
        self._fired: weakref.WeakKeyDictionary[Task, tuple[int, float]] = (
            weakref.WeakKeyDictionary()
        )
        #: The planned sweep; the loop's own timer queue holds it while it is due.
        self._handle: weakref.ref[asyncio.TimerHandle] | None = None
        self.next_at = math.inf

    def watch(self, task: Task, seconds: float, now: float | None = None) -> tuple[float, float]:
        """Cancel ``task`` at most ``seconds`` from now (up to ``GRAIN`` sooner).

        ``now``: ``time.monotonic()``, when the caller just read it. Returns
        ``(deadline, outer)`` for ``done`` and ``timed_out`` (see ``watch_at``).
        Every ``watch`` needs a ``done`` once the attempt ends.
        """
        if now is None or not self.stock:
            now = time.monotonic() if self.stock else self._time()
        deadline = now + seconds
        return deadline, self.watch_at(task, deadline)

    def watch_at(self, task: Task, deadline: float) -> float:
        """Cancel ``task`` at ``deadline`` (up to ``GRAIN`` sooner), on this watchdog's clock.

        ``time.monotonic()`` when ``stock`` (the aiohttp lean path adds its
        limit to the reading it already has), else the loop's own ``time()``.
        Returns ``outer`` for ``done``: ``deadline`` itself (the same object),
        or, when an attempt of the same task is watched already (a protected
        call inside another), that attempt's deadline. The task is then
        watched for the sooner of the two until ``done``.
        """
        deadlines = self.deadlines
        outer = deadlines.setdefault(task, deadline)
        soonest = deadline
        if outer is not deadline:  # nested: the enclosing attempt set `base` already
            if outer < deadline:
                soonest = outer
            else:
                deadlines[task] = deadline
        else:
            cancelling = task.cancelling()
            if cancelling:
                self.base[task] = cancelling
        if soonest < self.next_at:
            self.schedule(soonest)
        return outer

    def done(self, task: Task, deadline: float, outer: float) -> None:
        """The attempt watched until ``deadline`` ended (``outer``: what ``watch_at`` returned):
        stop watching it, or watch the enclosing attempt's deadline again."""
        if outer is deadline:
            self.deadlines.pop(task, None)
            if self.base:
                self.base.pop(task, None)
            return
        self.deadlines[task] = outer
        if outer < self.next_at:
            self.schedule(outer)

    def timed_out(self, task: Task, deadline: float) -> bool:
        """After a ``CancelledError``: True when it was a sweep's for ``deadline``, now undone.

        Like ``asyncio.timeout``: the cancellation is ours only when a sweep
        cancelled the task and no other cancellation is pending on it. A sweep
        that fired for a sooner deadline (an enclosing attempt's) is left for
        that attempt's watcher to claim: the cancellation goes on up to it.
        """
        fired = self._fired.get(task)
        if fired is None:
            return False
        expected, at = fired
        if deadline > at:
            return False
        del self._fired[task]
        return task.uncancel() <= expected

    def _time(self) -> float:
        loop = self._loop()
        return math.inf if loop is None else loop.time()  # a loop gone has no task left

    def schedule(self, when: float) -> None:
        """Sweep at ``when`` (on ``loop.time()``) instead of when planned."""
        handle = None if self._handle is None else self._handle()
        if handle is not None:
            handle.cancel()
        loop = self._loop()
        if loop is None:  # pragma: no cover - its tasks went with it: nothing to watch
            return
        self.next_at = when
        self._handle = weakref.ref(loop.call_at(when, self._sweep))

    def _sweep(self) -> None:
        self._handle, self.next_at = None, math.inf
        horizon = self._time() + GRAIN
        soonest = math.inf
        due = []
        for task, deadline in self.deadlines.items():
            if deadline <= horizon:
                due.append(task)
            elif deadline < soonest:
                soonest = deadline
        for task in due:
            deadline = self.deadlines.pop(task)
            expected = self.base.pop(task, 0)
            if not task.done() and task.cancelling() == expected:
                self._fired[task] = (expected, deadline)
                task.cancel()
        if soonest < math.inf:
            self.schedule(soonest)


def _task_lookup() -> Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None]:
    """``asyncio.current_task(loop)`` without a Python frame where that costs one.

    On 3.11 ``current_task`` is a Python function returning
    ``_current_tasks.get(loop)``; that dict's own ``get`` does the same for a
    third of the cost. Elsewhere (3.12+, where it is written in C, or an
    asyncio without that dict) ``current_task`` itself.
    """
    tasks = getattr(asyncio.tasks, "_current_tasks", None)
    written_in_python = hasattr(asyncio.current_task, "__code__")
    if written_in_python and isinstance(tasks, dict):
        lookup: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] = tasks.get
        return lookup
    return asyncio.current_task


#: ``asyncio.current_task(loop)``, cheaper on 3.11 (the lean paths watch the current task).
current_task = _task_lookup()

# Per event loop: a loop's handles only ever fire on that loop.
_dogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Watchdog] = weakref.WeakKeyDictionary()

#: The last loop seen, its watchdog, and whether the loop is one of asyncio's own
#: (``BaseEventLoop``, whose ``_thread_id`` names the thread running it, else None).
#: Nearly every call comes from the same loop, and a ``WeakKeyDictionary`` lookup
#: costs more than everything else here. One list, so that ``seawall.calls``'s lean
#: path reads the same entry; a forked child starts with it empty.
LAST: list[tuple[weakref.ref[asyncio.AbstractEventLoop], Watchdog, bool] | None] = [None]


def of(loop: asyncio.AbstractEventLoop) -> Watchdog:
    """The watchdog of ``loop`` (created on first use)."""
    last = LAST[0]
    if last is not None and last[0]() is loop:
        return last[1]
    dog = _dogs.get(loop)
    if dog is None:
        dog = _dogs[loop] = Watchdog(loop)
    LAST[0] = (weakref.ref(loop), dog, isinstance(loop, asyncio.BaseEventLoop))
    return dog


def running() -> tuple[asyncio.AbstractEventLoop, Watchdog]:
    """The running event loop and its watchdog, most often without a system call.

    ``asyncio.get_running_loop()`` asks the OS for the process id each time
    (``getpid()``, so that a forked child does not use its parent's loop):
    the one system call of a lean call, 0.36-0.38 µs of it measured in one
    process (``benchmarks/README.md``, sixth pass). The last loop seen is
    the running one when it is asyncio's own and runs in this thread: such a
    loop sets ``_thread_id`` for as long as ``run_forever`` runs, and asyncio
    refuses to run a second loop in a thread that runs one. Anything else asks
    asyncio. ``seawall.call_lean.run_call`` writes this out: keep the two in step.
    """
    last = LAST[0]
    # `_thread_id`: asyncio's own attribute (BaseEventLoop: `last[2]`), not in typeshed.
    if (
        last is not None
        and last[2]
        and (loop := last[0]()) is not None
        and loop._thread_id == _thread_ident()  # type: ignore[attr-defined]
    ):
        return loop, last[1]
    loop = asyncio.get_running_loop()
    return loop, of(loop)


def _forget_in_child() -> None:
    """After ``fork()``: the parent's loop is no longer anybody's running loop here."""
    LAST[0] = None


_thread_ident = threading.get_ident
os.register_at_fork(after_in_child=_forget_in_child)
