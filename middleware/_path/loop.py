"""The attempt loop: make attempts until one succeeds or a rule says stop.

One ``CallState`` per call carries what the attempts share (tenacity's ``RetryCallState``
idea); the rules (``rules``), the give-up step (``giveup``), what an attempt means (``verdict``),
settling an attempt that ended (``settle``) and the reporting (``observer``) are modules apart.
The order of one attempt, as in DESIGN.md: cooldown, deadline, breaker, the
attempt under its time limit, classification (plugins through ``Hooks``),
breaker/cooldown/escalation, events, then stop or wait and go again.

The key's lock is held around the books only (counters, breaker, cooldown,
budget), never around a plugin: what the observer has to tell from a locked
section goes out after it (``Observer.flush``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from seawall import _testmode, watchdog
from seawall._path import hold
from seawall._path.giveup import GiveUp, deadline_error, make_error, turn_past_deadline
from seawall._path.observer import Observer
from seawall._path.rules import deadline_at
from seawall._path.settle import Settle
from seawall._path.spec import (
    Attempt,
    CallSpec,
    FirstAttempt,
    Misuse,
    answered_before,
    attempt_timeout,
    first_misuse,
)
from seawall._path.verdict import classify
from seawall.breaker import CLOSED_PERMIT, Permit
from seawall.cooldown import RECHECK
from seawall.deadline import DEADLINE_VAR
from seawall.errors import AttemptRecord, CircuitOpenError, DeadlineExceededError
from seawall.outcome import Category
from seawall.plugins.hooks import Hooks

__all__ = ["CallState", "Loop", "classify"]

#: Turns a call may take in the cooldown when 429s keep moving its end (then it goes).
_REBOOKINGS = 8

# Bound once: a module attribute or a C method looked up per call costs more than the call.
_inbound_deadline = DEADLINE_VAR.get  # deadline.current_deadline without its frame
_current_task = watchdog.current_task  # asyncio.current_task without its frame on 3.11
_monotonic = time.monotonic


class CallState:
    """One call between its attempts: when it started, its deadline, what happened so far."""

    __slots__ = (
        "by_deadline",
        "deadline_at",
        "ended",
        "exc",
        "history",
        "max_attempts",
        "permit",
        "result",
        "retried",
        "spec",
        "spent",
        "started",
        "t0",
        "timer",
        "value",
        "watched",
    )

    def __init__(self, spec: CallSpec, started: float, at: float | None) -> None:
        self.spec = spec
        self.started = started
        self.deadline_at = at
        self.max_attempts = _testmode.cap_attempts(spec.policy.retry.max_attempts)
        self.history: list[AttemptRecord] = []
        self.retried: dict[Category, int] = {}
        self.spent: int | None = None  # budget bucket of a retry not sent yet (Settle.unspend)
        # The current attempt: its permit, start and end, result, and how it was timed.
        self.permit: Permit = CLOSED_PERMIT
        self.t0 = self.ended = started
        self.result: Attempt | None = None
        self.exc: Exception | None = None
        self.by_deadline = False  # the caller's deadline, not the policy's limit, timed it
        self.timer: asyncio.Timeout | None = None
        self.watched = False  # the shared watchdog ended it
        self.value: Any = None  # what the call returns, once it is over

    def took(self, first: FirstAttempt) -> None:
        """The adapter's first attempt, made under the policy's own limit."""
        self.permit = CLOSED_PERMIT
        self.t0, self.ended = first.started, first.ended
        self.result, self.exc = first.result, first.exc
        self.by_deadline, self.timer, self.watched = False, None, False

    @property
    def cut(self) -> bool:
        """Cut short by the caller's own deadline (not the policy's attempt limit)."""
        timer = self.timer
        return self.by_deadline and (self.watched or (timer is not None and timer.expired()))


class Loop(Settle):
    """Runs calls; one per ``Seawall``."""

    def __init__(self, clock: Callable[[], float], hooks: Hooks, observer: Observer) -> None:
        self.clock = clock
        self.hooks = hooks
        self.observer = observer
        self.giveup = GiveUp(clock, observer)

    async def run(
        self,
        spec: CallSpec,
        attempt: Callable[[int], Awaitable[Attempt]],
        first: FirstAttempt | None = None,
    ) -> Any:
        """Make attempts until one succeeds or a rule says stop; see DESIGN.md.

        ``first``: the adapter's first attempt, made already (the aiohttp middleware's lean
        path); the loop goes on from its result. The decisions are ``begin``/``admit``/
        ``settle``, shared with the sync loop (``seawall._path.threads``); this awaits them.
        """
        call = self.begin(spec, first)
        try:
            for number in range(1, call.max_attempts + 1):
                if first is not None:
                    if type(first.exc) is TypeError:  # a lean attempt failed: sw.call(fetch(url))?
                        self._refuse_misuse(call, attempt, first.exc)
                    call.took(first)
                    first = None
                else:
                    await self._send(call, number, attempt)
                delay = self.settle(call, number)  # takes the key's lock around the books
                if delay is None:
                    return call.value
                await _testmode.sleep(delay)
        except BaseException:
            self.unspend(call)  # cancelled in a wait, or the retry refused: its token back
            raise
        msg = "unreachable: the last attempt always stops"  # pragma: no cover
        raise AssertionError(msg)  # pragma: no cover

    def _refuse_misuse(
        self, call: CallState, attempt: Callable[[int], Awaitable[Attempt]], exc: TypeError
    ) -> None:
        """Raise a ``TypeError`` that says what to do when a lean first attempt failed because
        ``sw.call`` was given no function (``spec.first_misuse``); no verdict, as in ``_send``."""
        misuse = first_misuse(attempt, exc)
        if misuse is not None:
            self.abandon(call)
            raise TypeError(str(misuse)) from None

    # --- the steps both loops share ---------------------------------------------

    def begin(self, spec: CallSpec, first: FirstAttempt | None = None) -> CallState:
        """A call starts: count it (unless the adapter's first attempt did); its ``CallState``."""
        state = spec.state
        lock = state.lock
        lock.acquire()
        try:
            if first is None:
                started = self.clock()
                state.stats.began()  # KeyState.begin, written out (a call less)
                state.budget.on_request(started)
            else:
                started = first.started
                state.cooldown.sent()  # the lean path does not count its attempts in flight
        finally:
            lock.release()
        return CallState(spec, started, self._deadline_at(spec, started))

    def admit(self, call: CallState, permit: Permit | None) -> float | None:
        """Let the attempt go with the breaker's ``permit``: start the clock, count it in flight.

        Returns the attempt's time limit. Raises seawall's error when the
        breaker refused (``permit`` is ``None``) or the deadline leaves no
        time (the permit goes back). Call under the key's lock, after any
        cooldown wait (``cooldown_wait``) and any hold for a probe's verdict;
        then ``observer.flush()`` after releasing it (a rejection, a transition).
        """
        spec = call.spec
        state = spec.state
        if permit is None:
            retry_after = state.breaker.retry_after()
            self.observer.reject(spec, "breaker", retry_after)
            raise make_error(spec, CircuitOpenError, None, call.history, retry_after=retry_after)
        try:
            limit = self._attempt_limit(call)  # after any hold, which took some of the deadline
        except BaseException:
            state.breaker.release(permit)
            raise
        call.permit = permit
        call.timer, call.watched, call.spent = None, False, None  # (spent: the paid retry goes)
        call.t0 = self.clock()
        state.cooldown.sent()
        return limit

    # --- one attempt ---------------------------------------------------------

    async def _send(
        self, call: CallState, number: int, attempt: Callable[[int], Awaitable[Attempt]]
    ) -> None:
        """Make attempt ``number`` under its time limit; what it gave goes into ``call``."""
        spec = call.spec
        state = spec.state
        cooldown = state.cooldown
        if state.breaker.ramp_until:  # queue behind released held calls
            await self.ramp_turn(spec)
        if cooldown.until or cooldown.rate is not None:  # no coroutine for an idle key
            await self._respect_cooldown(call)
        lock = state.lock
        lock.acquire()  # not `with`: its __enter__ parses arguments (~1k instructions)
        try:
            permit = state.breaker.admit()
            if permit is not None:  # admitted at once: one locked section
                limit = self.admit(call, permit)
        except BaseException:
            lock.release()
            self.observer.flush()  # a rejection (the deadline passed) to tell
            raise
        lock.release()
        if permit is not CLOSED_PERMIT:  # refused, or a probe: the breaker may have moved
            if permit is None:
                if state.breaker.policy.hold:  # wait if the verdict is near
                    try:
                        permit = await hold.held(
                            state.breaker,
                            self.clock,
                            call.deadline_at,
                            state.stats,
                            lock,
                            self.observer.flush,
                        )
                    except hold.TurnPastDeadline:
                        raise turn_past_deadline(self.observer, spec, call.history) from None
                try:
                    with lock:
                        limit = self.admit(call, permit)
                finally:
                    self.observer.flush()
            else:
                self.observer.flush()  # gone half-open for this probe: told after the lock
            self.lend(call)  # a block's probe: nothing cuts it short, its turn ends at its limit
        # Long limits share a coarse timer (seawall.watchdog); short ones, which
        # need precision, get their own asyncio.timeout.
        task = dog = None
        due = 0.0
        try:
            if limit is None:
                result = await attempt(number)
            elif limit >= watchdog.MIN_LIMIT:
                loop, dog = watchdog.running()
                task = _current_task(loop)
                assert task is not None, "seawall calls run inside a task"
                if dog.stock and self.clock is _monotonic:  # admit just read the clock
                    due = call.t0 + limit
                    outer = dog.watch_at(task, due)
                else:
                    due, outer = dog.watch(task, limit)
                try:
                    result = await attempt(number)
                finally:
                    dog.done(task, due, outer)
            else:
                call.timer = asyncio.timeout(limit)
                async with call.timer:
                    result = await attempt(number)
            call.result, call.exc = result, None
        except Misuse as misuse:
            self.abandon(call)
            raise TypeError(str(misuse)) from None
        except Exception as caught:
            if type(caught) is TimeoutError and call.timer is not None and call.timer.expired():
                caught = answered_before(caught, None)  # a body cut short after its status?
            call.result, call.exc = None, caught
        except asyncio.CancelledError as cancelled:
            if dog is None or task is None or limit is None or not dog.timed_out(task, due):
                self.abandon(call)  # cancelled: never retried, never counted
                raise
            timeout = answered_before(attempt_timeout(limit), cancelled)
            call.result, call.exc, call.watched = None, timeout, True
        except BaseException:
            self.abandon(call)
            raise
        call.ended = self.clock()

    async def ramp_turn(self, spec: CallSpec) -> None:
        """Take a paced turn in the ramp after a recovery (``breaker.ramp_until`` set)."""
        state = spec.state
        with state.lock:
            ticket = hold.ramp_ticket(state.breaker, state.cooldown)  # None: a cooldown ends it
        if ticket is not None:
            await hold.wait_turn(state.breaker, ticket, self.clock, state.lock)

    def _deadline_at(self, spec: CallSpec, now: float) -> float | None:
        """The absolute deadline on our clock: the policy's or the inbound one."""
        inbound = _inbound_deadline()
        own = spec.policy.timeout.deadline
        if own is None and inbound is None:
            return None  # the common case, without the conversion's call
        # Inbound deadlines are on time.monotonic(); rules.deadline_at converts them.
        return deadline_at(own, inbound, now, 0.0 if inbound is None else time.monotonic())

    def cooldown_wait(self, call: CallState, *, again: bool = False) -> float:
        """Seconds to wait for the key's cooldown before the next attempt (a paced turn).

        Raises ``DeadlineExceededError`` when the wait would not fit the
        deadline. Call under the key's lock, then ``observer.flush()`` after
        releasing it (the event of the wait, or of the refusal); the caller sleeps.
        """
        spec = call.spec
        at = call.deadline_at
        left = None if at is None else at - self.clock()
        # A paced turn, not only the shared "until" (``again``: booking after a voided turn).
        wait = spec.state.cooldown.reserve(left, again=again)
        if not wait:
            return 0.0
        if left is not None and wait >= left:
            self.observer.reject(spec, "cooldown", wait)
            left = max(0.0, left)
            msg = (
                f"{spec.request_line()}: {spec.key} is rate-limited for {wait:.2f}s more, "
                f"longer than the {left:.2f}s left before the deadline; not sent. "
                "Lengthen the deadline or slow the callers down"
            )
            raise make_error(spec, DeadlineExceededError, None, call.history, message=msg)
        self.observer.waiting(spec, len(call.history), wait, "cooldown", Category.RATE_LIMIT)
        return float(wait)

    def book_turn(self, call: CallState, *, again: bool) -> tuple[float, int, float]:
        """Book a paced turn under the key's lock (its event told after it): the time,
        the cooldown's cuts then (a later cut voids the turn) and the seconds to wait.
        ``again``: booking after a voided turn. Raises as ``cooldown_wait``."""
        state = call.spec.state
        now = self.clock()
        cuts = state.cooldown.cuts
        try:
            with state.lock:
                wait = self.cooldown_wait(call, again=again)
        finally:
            self.observer.flush()  # the wait (or the refusal) told after the lock
        return now, cuts, wait

    async def _respect_cooldown(self, call: CallState) -> None:
        """Wait for a paced turn; book again when a 429 moves the pause or cuts the pace.

        A server's wait is honoured in full for every caller: a 429 that comes
        while callers sleep on booked turns asks for a longer pause (no call
        before it ends) or cuts the pace (turns booked before would go as a herd).
        """
        cooldown = call.spec.state.cooldown
        at = call.deadline_at
        for booking in range(_REBOOKINGS):
            now, cuts, wait = self.book_turn(call, again=booking > 0)
            slept = 0.0
            try:
                while slept < wait and cooldown.cuts == cuts:  # a long wait looks again
                    nap = min(wait - slept, RECHECK)
                    await _testmode.sleep(nap)
                    slept += nap
            except BaseException:  # cancelled: the turn is the next caller's
                with call.spec.state.lock:
                    cooldown.give_back(now + wait, cuts)
                raise
            if cooldown.until > now + wait or cooldown.cuts != cuts:
                continue
            gap = cooldown.spaced()  # woken late with others: go spaced, not at once
            if gap and (at is None or self.clock() + gap < at):
                await _testmode.sleep(gap)
                if cooldown.until > now + wait or cooldown.cuts != cuts:
                    continue
            return

    def _attempt_limit(self, call: CallState) -> float | None:
        """Seconds this attempt may take; sets whether the deadline is what limits it."""
        spec = call.spec
        limit = spec.policy.timeout.attempt
        call.by_deadline = False
        if call.deadline_at is None:
            return limit
        left = call.deadline_at - self.clock()
        if left <= 0:
            passed = f"{spec.request_line()}: the deadline passed"
            raise deadline_error(self.observer, spec, call.history, passed)
        if limit is None or left < limit:
            call.by_deadline = True
            return left
        return limit
