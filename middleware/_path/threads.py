"""The attempt loop for threads: plain ``def`` functions and ``for attempt in sw.attempts()``.

The same steps as the async loop (``Loop.begin``/``admit``/``settle``; the
books under the key's lock, plugins after it), driven without an event loop: a wait is the thread's
``sleep`` (``time.sleep`` unless the ``Seawall`` was given another; instant
in test mode), and each attempt is a block the caller runs
(``with attempt:``). A thread cannot be interrupted, so ``TimeoutPolicy.attempt``
is not applied; the deadline still stops retries and refuses late attempts,
and an adapter that can bound its own I/O (the httpx transport, through
httpx's timeouts) bounds an attempt by the deadline (``SyncAttempt.time_left``).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Self

from seawall import _testmode
from seawall._path import hold
from seawall._path.giveup import turn_past_deadline
from seawall._path.loop import _REBOOKINGS, CallState, Loop
from seawall._path.spec import Attempt, CallSpec, FirstAttempt, Misuse
from seawall.breaker import Permit
from seawall.cooldown import RECHECK

__all__ = ["Block", "SyncAttempt", "SyncRun", "loud_stop", "on_a_loop", "ramp_turn", "wait"]

_OPEN, _REPORTED, _INTERRUPTED = 0, 1, 2

log = logging.getLogger("seawall.sync")

#: The loops (one per ``Seawall``) whose sync forms waited on an event loop's thread, and
#: were warned about (once).
_warned: weakref.WeakSet[Loop] = weakref.WeakSet()


def on_a_loop() -> bool:
    """Whether this thread runs an event loop (a sync form called from async code)."""
    return asyncio._get_running_loop() is not None


def loud_stop(exc: BaseException) -> BaseException:
    """What the ``for``/``async for`` of seawall's attempts raises for a call given up with ``exc``.

    ``exc`` itself, unless it is ``StopIteration`` or ``StopAsyncIteration``: raised by
    an iterator's ``__next__`` (``__anext__``) those mean "no more attempts", so
    the loop would end quietly and the call seem to succeed with ``None``. As
    PEP 479 does for generators, a ``RuntimeError`` chained to it is raised instead.
    """
    if not isinstance(exc, StopIteration | StopAsyncIteration):
        return exc
    name = type(exc).__name__
    msg = (
        f"the protected code raised {name}; seawall raises this RuntimeError instead "
        f"(the {name} is its __cause__), since out of seawall's attempt loop {name} "
        "would mean 'no more attempts' and the call would seem to succeed with None. "
        f"Catch the {name} where it is raised (e.g. next(it, default)) or raise another exception"
    )
    error = RuntimeError(msg)
    error.__cause__ = exc
    return error


def wait(loop: Loop, spec: CallSpec, sleep: Callable[[float], None], seconds: float) -> None:
    """A sync form's wait: ``sleep`` (the ``Seawall``'s), instant in test mode; on an event
    loop's thread it is warned about, once per ``Seawall``."""
    if seconds > 0 and not _testmode.is_testing():
        if loop not in _warned and on_a_loop():
            _warned.add(loop)
            log.warning(
                "%s: a sync form (sw.call_sync, @sw.protect on a def, the sync httpx "
                "transport, with sw.breaker(...)) waits %.2fs on the event loop's thread, and "
                "every task on the loop waits with it; run it in a thread "
                "(await asyncio.to_thread(...)) or use the async form (said once per Seawall)",
                spec.request_line(),
                seconds,
            )
        sleep(seconds)


def ramp_turn(loop: Loop, spec: CallSpec, sleep: Callable[[float], None]) -> None:
    """Take a paced turn in the ramp after a recovery, as ``Loop.ramp_turn`` does, slept
    by ``sleep`` (``wait``'s steps): ``SyncRun`` and the sync guard."""
    state = spec.state
    with state.lock:
        ticket = hold.ramp_ticket(state.breaker, state.cooldown)
    if ticket is not None:
        hold.wait_turn_sync(state.breaker, ticket, loop.clock, state.lock, sleep)


class Block:
    """One attempt as a ``with`` block (the sync and the async block forms)."""

    __slots__ = ("number",)

    def __init__(self, number: int) -> None:
        #: 1 for the first attempt.
        self.number = number

    def _used(self) -> bool:
        raise NotImplementedError

    def _ended(self, exc: BaseException | None) -> bool:
        """The block ended (``exc``: what it raised); whether to swallow ``exc``."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        if self._used():
            msg = f"attempt {self.number} was already used: one `with attempt:` per attempt"
            raise RuntimeError(msg)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self._ended(exc)


class SyncAttempt(Block):
    """One attempt in a thread: use it as ``with attempt:``.

    Leaving the block normally is a success; an ``Exception`` raised in it is
    the attempt's failure, which the block keeps from the caller so that the
    loop can go on (retry, or raise from the ``for`` statement). Anything
    else (``KeyboardInterrupt``, ``SystemExit``), and an adapter's ``Misuse``
    (``sw.call_sync`` of a function that returned a coroutine), gives the
    breaker permit back without a verdict and propagates.
    """

    __slots__ = ("_run", "_status", "result", "time_left", "value")

    def __init__(self, run: SyncRun, number: int, time_left: float | None = None) -> None:
        super().__init__(number)
        #: What the attempt produced (``sw.call_sync`` puts the function's answer here).
        self.value: Any = None
        #: An adapter's fuller report (an HTTP response's status, headers, body), else ``None``.
        self.result: Attempt | None = None
        #: Seconds left before the caller's deadline when it is sooner than the policy's
        #: attempt limit, else ``None``: an adapter that can bound its own I/O bounds the
        #: attempt by it (and says ``cut()`` when that bound ended it).
        self.time_left = time_left
        self._run = run
        self._status = _OPEN

    def cut(self) -> None:
        """The adapter's bound from ``time_left`` ended this attempt: the caller's own
        deadline cut it, so it is no failure of the upstream (no breaker count, counted
        as cut by deadline), as the event loop's deadline cuts are."""
        call = self._run._call
        if call is not None and self._status == _OPEN and call.by_deadline:
            call.watched = True  # with by_deadline: CallState.cut

    def _used(self) -> bool:
        return self._status != _OPEN

    def _ended(self, exc: BaseException | None) -> bool:
        if self._status != _OPEN:
            return False
        if exc is not None and (not isinstance(exc, Exception) or isinstance(exc, Misuse)):
            self._status = _INTERRUPTED
            self._run.interrupted()
            return False
        self._status = _REPORTED
        self._run.report(self, exc)
        return exc is not None


class SyncRun:
    """The attempts of one call in a thread; iterate it for ``SyncAttempt`` blocks.

    After the loop, ``value`` is the call's answer. When seawall stops, the
    ``for`` statement raises (the original exception with the attempt
    history in its notes, or seawall's error), as ``async for`` does.
    """

    def __init__(
        self,
        loop: Loop,
        spec: CallSpec,
        sleep: Callable[[float], None],
        first: FirstAttempt | None = None,
    ) -> None:
        self._loop = loop
        self._spec = spec
        self._sleep = sleep
        self._first = first  # an attempt the adapter made (a lean path): settled first
        self._call: CallState | None = None
        self._current: SyncAttempt | None = None
        self._number = 0
        self._delay: float | None = None  # after a failed attempt: the wait before the next
        self._stop: BaseException | None = None  # what settling the last attempt raised
        self._done = False
        self.value: Any = None

    def __iter__(self) -> Iterator[SyncAttempt]:
        return self

    def __next__(self) -> SyncAttempt:
        if self._done:
            raise StopIteration
        current = self._current
        if current is not None and current._status == _OPEN:
            self._done = True
            self.interrupted()
            msg = (
                f"attempt {current.number} was not reported: run each attempt's code "
                "inside `with attempt:` in the `for` body"
            )
            raise RuntimeError(msg)
        loop, spec = self._loop, self._spec
        call = self._call
        if call is None:
            first, self._first = self._first, None
            call = self._call = loop.begin(spec, first)
            if first is not None:
                call.took(first)
                self._number = 1
                self._settle(call, 1)
                return self.__next__()  # the loop's answer to it: stop, or wait and go on
        elif self._stop is not None or self._delay is None:
            self._done = True
            stop, self._stop = self._stop, None
            if stop is not None:
                raise loud_stop(stop)
            self.value = call.value
            raise StopIteration
        cooldown = spec.state.cooldown
        try:
            if self._delay is not None:
                self._wait(self._delay)
            if spec.state.breaker.ramp_until:  # queue behind the calls released by a recovery
                self._ramp_turn(call)
            if cooldown.until or cooldown.rate is not None:
                self._respect_cooldown(call)
            if self._number >= call.max_attempts:  # pragma: no cover - settle always stops
                msg = "unreachable: the last attempt always stops"
                raise AssertionError(msg)
            limit = self._admit(call)
        except BaseException:
            self._done = True
            loop.unspend(call)  # interrupted in the wait, or refused: the retry never went
            raise
        self._number += 1
        self._current = SyncAttempt(self, self._number, limit if call.by_deadline else None)
        return self._current

    def _admit(self, call: CallState) -> float | None:
        """The breaker's permit and the attempt's time limit, as ``Loop._send`` takes them.

        Refused while a probe's verdict is near, the thread is held for it
        (``hold.held_thread``), as an async call is; not on an event loop's
        thread, whose tasks (the probe among them, maybe) would wait with it.
        Its time limit cannot cut a thread short: not applied, but the
        deadline's share of it is handed to the block (``time_left``).
        """
        loop, state = self._loop, call.spec.state
        breaker, lock, observer = state.breaker, state.lock, loop.observer
        limit: float | None = None
        admitted = False
        try:
            with lock:
                permit = breaker.admit()
                if permit is not None or not breaker.policy.hold or on_a_loop():
                    limit = self._admitted(call, permit)
                    admitted = True
        finally:
            self._told(call, admitted)  # a rejection, or the breaker gone half-open for a probe
        if admitted:
            return limit
        try:
            permit = hold.held_thread(
                breaker, loop.clock, call.deadline_at, state.stats, lock, observer.flush, self._wait
            )
        except hold.TurnPastDeadline:
            raise turn_past_deadline(loop.observer, call.spec, call.history) from None
        try:
            with lock:
                limit = self._admitted(call, permit)
                admitted = True
        finally:
            self._told(call, admitted)
        return limit

    def _admitted(self, call: CallState, permit: Permit | None) -> float | None:
        """``Loop.admit`` under the key's lock; a probe's turn is lent until its limit."""
        limit = self._loop.admit(call, permit)
        self._loop.lend(call, limit)  # a probe's turn ends at its limit (Breaker.lend)
        return limit

    def _told(self, call: CallState, admitted: bool) -> None:
        """``observer.flush()`` after an admit step. Interrupted there once ``admitted``
        (Ctrl-C in a log handler or a plugin told of the move to half-open), the attempt
        never goes: its permit back (a probe's turn), not in flight (``Loop.abandon``)."""
        try:
            self._loop.observer.flush()
        except BaseException:
            if admitted:
                self._loop.abandon(call)
            raise

    def _ramp_turn(self, call: CallState) -> None:
        """Take a paced turn in the ramp after a recovery, as ``Loop._send`` does."""
        ramp_turn(self._loop, call.spec, self._wait)

    def _respect_cooldown(self, call: CallState) -> None:
        """Wait for a paced turn, as ``Loop._respect_cooldown`` does on the event loop.

        A long wait looks again every ``RECHECK`` seconds, and the caller books
        again when a cut voided its turn or a 429 moved the shared pause past it:
        a thread that slept through either would send inside a server's pause,
        or beside the callers booked after the cut. Woken, it takes the next
        spaced moment (``Cooldown.spaced``), as the event loop's callers do.
        """
        state = call.spec.state
        cooldown = state.cooldown
        at = call.deadline_at
        for booking in range(_REBOOKINGS):
            now, cuts, wait = self._loop.book_turn(call, again=booking > 0)
            slept = 0.0
            try:
                while slept < wait and cooldown.cuts == cuts:  # a long wait looks again
                    nap = min(wait - slept, RECHECK)
                    self._wait(nap)
                    slept += nap
            except BaseException:  # interrupted: the turn is the next caller's
                with state.lock:
                    cooldown.give_back(now + wait, cuts)
                raise
            if cooldown.until > now + wait or cooldown.cuts != cuts:
                continue
            # Threads the OS woke late and together go spaced, not at once (a small bucket
            # refuses the burst); under the lock: other threads take the next moments.
            with state.lock:
                gap = cooldown.spaced()
            if gap and (at is None or self._loop.clock() + gap < at):
                self._wait(gap)
                if cooldown.until > now + wait or cooldown.cuts != cuts:
                    continue
            return

    def _wait(self, seconds: float) -> None:
        wait(self._loop, self._spec, self._sleep, seconds)

    def report(self, attempt: SyncAttempt, exc: BaseException | None) -> None:
        """The block of ``attempt`` ended: settle it now (a ``break`` keeps the verdict)."""
        call = self._call
        assert call is not None
        loop = self._loop
        call.ended = loop.clock()
        if exc is None:
            result = attempt.result
            call.result, call.exc = result or Attempt(attempt.value), None
        else:
            assert isinstance(exc, Exception)
            call.result, call.exc = None, exc
        self._settle(call, attempt.number)

    def _settle(self, call: CallState, number: int) -> None:
        """The verdict on the attempt just made, and what next (``_delay``, or ``_stop``)."""
        try:
            self._delay = self._loop.settle(call, number)  # takes the key's lock itself
        except Exception as stop:  # the call gives up: raised by the `for` statement
            self._delay, self._stop = None, stop

    def interrupted(self) -> None:
        """The block was left by an interrupt, or never reported: no verdict."""
        self._done = True
        call = self._call
        if call is not None:
            self._loop.abandon(call)

    def __del__(self) -> None:
        # Left by `break` (or an error) inside an open block: give the permit back.
        current = self._current
        if current is not None and current._status == _OPEN and not self._done:
            self.interrupted()
