"""The breaker's admit step with holding: wait for a near probe verdict instead of failing.

While a key's breaker is open or half-open, a call whose next probe verdict
is expected within ``BreakerPolicy.hold`` seconds (and before its deadline)
waits for it (``Breaker.hold``): when the probe succeeds it goes, at the
paced slot the breaker gave it; when the probe fails or the hold runs out it
fails with ``CircuitOpenError``, as every call did before; when its paced slot
comes after its deadline, with its deadline error (``TurnPastDeadline``). A held call that
is cancelled leaves nothing behind (``Breaker.unhold``). A held call may
become the probe itself: it wakes when the probe is due, or when a probe
lent out (``Breaker.lend``: a thread's, a guarded block's) reaches its time
limit with no verdict, and asks again (``Breaker.turn_in``).

A thread (a sync form's call) is held the same way (``held_thread``), on a
``ThreadWaiter`` in the same queue, and takes its ramp turn with the same
steps (``ramp_ticket``, ``turn_waits``), sleeping them as a thread sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Generator
from typing import TypeVar

from seawall import _testmode
from seawall.breaker import Breaker, BreakerState, Permit
from seawall.breaker_parts import ThreadWaiter, Waiter
from seawall.cooldown import Cooldown
from seawall.stats import KeyStats

__all__ = [
    "TurnPastDeadline",
    "held",
    "held_thread",
    "ramp_ticket",
    "wait_turn",
    "wait_turn_sync",
]

#: Waits one held call may go through (verdicts, due probes, permits taken by
#: others); each ends by the hold's end, so this only bounds the loop.
MAX_ROUNDS = 32

#: A held thread whose ``Seawall`` has a clock of its own (not ``time.monotonic``) looks
#: at it this often (seconds) while it waits for the verdict: a test clock moved past
#: the probe's due time or the hold's end is seen then. On the real clock it just blocks.
LOOK_AGAIN = 0.02

_monotonic = time.monotonic

_W = TypeVar("_W", asyncio.Future[float | None], ThreadWaiter)


class TurnPastDeadline(Exception):
    """A held call was released by the probe's success, but its paced turn in the ramp
    comes after its deadline: it gave the turn back. The caller raises its deadline
    error (``CircuitOpenError`` would say the breaker is open: it has closed)."""


async def held(
    breaker: Breaker,
    clock: Callable[[], float],
    deadline_at: float | None,
    stats: KeyStats | None = None,
    lock: threading.RLock | None = None,
    flush: Callable[[], None] | None = None,
) -> Permit | None:
    """After ``breaker.admit()`` said no: a permit once the verdict came, or ``None``: fail.
    Released by the probe's success with its paced turn past ``deadline_at``:
    ``TurnPastDeadline``.

    A call that waits is counted once in ``stats.held`` (``health()``'s ``held_total``).
    ``lock`` is the key's lock (``KeyState.lock``): every change to the breaker
    and the counters here is made under it, as sync threads settle the same
    key under it; ``flush`` (``Observer.flush``) tells, after each locked
    section, what the breaker had to tell under it.
    """
    if lock is None:
        lock = threading.RLock()  # a breaker of the caller's own, shared with no thread
    try:
        return await _held(breaker, clock, deadline_at, stats, lock)
    finally:
        if flush is not None:
            flush()


async def _held(
    breaker: Breaker,
    clock: Callable[[], float],
    deadline_at: float | None,
    stats: KeyStats | None,
    lock: threading.RLock,
) -> Permit | None:
    """``held``, with the key's lock to take around the books."""
    now = clock()
    until = _hold_end(breaker, now, deadline_at)
    loop = asyncio.get_running_loop()
    # The hold on the loop's own clock too, so that an injected clock that
    # stands still cannot stretch it.
    real_end = loop.time() + (until - now)
    for _ in range(MAX_ROUNDS):
        with lock:
            joined = _join(breaker, now, until, stats, breaker.hold)
            if joined is None:
                return None
            turn, waiter = joined
            stats = None  # counted once per call
        # Wake when a probe's turn may come free without a verdict (open: the probe is due;
        # half-open: a lent probe's limit passes), to take it if nobody else does.
        wake = until if turn is None else min(now + turn, until)
        go_at = None
        try:
            timeout = min(wake - now, real_end - loop.time())
            async with asyncio.timeout(max(0.0, timeout)):
                go_at = await asyncio.shield(waiter)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                go_at = waiter.result()  # answered as the timer fired
            elif turn is None or loop.time() > real_end:
                # the hold ran out; a turn free at its very end is still asked for
                return None
            else:
                go_at = clock()  # a turn may be free: ask again, maybe be the probe
        except asyncio.CancelledError:
            with lock:
                if _turn_given(breaker, waiter):
                    breaker.leave_turn()  # released into the ramp as it was cancelled
            raise
        finally:
            with lock:
                breaker.unhold(waiter)  # a cancelled call leaves no trace
        if go_at is None:
            return None  # the probe failed, or the hold ran out
        if breaker.state is BreakerState.CLOSED:  # the probe succeeded: a turn in the ramp
            if deadline_at is not None and go_at >= deadline_at:
                with lock:
                    breaker.leave_turn()
                raise TurnPastDeadline  # the paced turn comes after the deadline
            await wait_turn(breaker, go_at, clock, lock)
        with lock:
            permit = breaker.admit()
        if permit is not None:
            return permit
        now = clock()
        if now >= until or loop.time() >= real_end:
            return None
    return None


def _join(
    breaker: Breaker,
    now: float,
    until: float,
    stats: KeyStats | None,
    hold: Callable[[float], _W | None],
) -> tuple[float | None, _W] | None:
    """Join the held calls (under the key's lock): the seconds until a probe's turn may be
    free without a verdict (``Breaker.turn_in``; ``None``: only a verdict frees one) and
    what to wait on, or ``None``: fail at once. ``stats``: count the call as held (once)."""
    due = breaker.verdict_in()
    if due is None or now + due > until:
        return None  # no verdict coming, or not within the hold
    waiter = hold(until)
    if waiter is None:
        return None  # hold=0, or enough calls wait already
    if stats is not None:
        stats.held += 1
    return breaker.turn_in(), waiter


def ramp_ticket(breaker: Breaker, cooldown: Cooldown) -> float | None:
    """A call that arrives during the ramp after a recovery (``ramp_until`` set): its
    ticket (``Breaker.turn``), or ``None``: go now. Under the key's lock.

    A cooldown pacing the key ends the ramp: the upstream's own pace supersedes it.
    The event loop's calls and the threads' ask this alike.
    """
    if cooldown.until or cooldown.rate is not None:
        breaker.end_ramp()
        return None
    return breaker.turn()


def turn_waits(
    breaker: Breaker, ticket: float, clock: Callable[[], float], lock: threading.RLock
) -> Generator[float, None, None]:
    """The waits of a turn in the ramp, for the caller to sleep (``wait_turn``, ``wait_turn_sync``).

    Until the ticket is due, then at least a gap after the last departure
    (``Breaker.depart``): callers that a stalled loop (or late threads) wake
    together leave spaced, not as a bunch. A ramp that ended meanwhile (a
    cooldown took over, or the breaker opened) spaces nobody any more. Closed
    during the first wait (the caller was cancelled or interrupted), it gives
    the turn back for the next call.
    """
    wait = ticket - clock()
    if wait > 0:
        try:
            yield wait
        except BaseException:  # GeneratorExit: the caller stopped waiting
            with lock:
                breaker.leave_turn()
            raise
    with lock:
        wait = breaker.depart()
    if wait > 0:
        yield wait


async def wait_turn(
    breaker: Breaker,
    ticket: float,
    clock: Callable[[], float],
    lock: threading.RLock | None = None,
) -> None:
    """Wait for a turn in the ramp after a recovery (``Breaker.turn``, or a held call's):
    the waits of ``turn_waits``, slept on the event loop. ``lock``: the key's lock, taken
    around the breaker's books."""
    if lock is None:
        lock = threading.RLock()  # a breaker of the caller's own, shared with no thread
    with contextlib.closing(turn_waits(breaker, ticket, clock, lock)) as waits:
        for wait in waits:
            await _testmode.sleep(wait)


def wait_turn_sync(
    breaker: Breaker,
    ticket: float,
    clock: Callable[[], float],
    lock: threading.RLock,
    sleep: Callable[[float], None],
) -> None:
    """``wait_turn`` for a thread: the waits of ``turn_waits``, slept by ``sleep``."""
    with contextlib.closing(turn_waits(breaker, ticket, clock, lock)) as waits:
        for wait in waits:
            sleep(wait)


# --- threads ---------------------------------------------------------------------------


def held_thread(
    breaker: Breaker,
    clock: Callable[[], float],
    deadline_at: float | None,
    stats: KeyStats,
    lock: threading.RLock,
    flush: Callable[[], None],
    sleep: Callable[[float], None],
) -> Permit | None:
    """``held`` for a thread: after ``breaker.admit()`` said no, block until the verdict
    came (a permit) or the hold ran out (``None``: fail; ``TurnPastDeadline`` as
    ``held``'s). Not on an event loop's thread.

    The steps of ``held``: the thread waits on a ``ThreadWaiter`` in the key's
    queue of held calls (it counts against ``hold_max_calls``), answered by
    the probe's verdict from whichever thread or loop records it; it wakes
    when the probe is due, or a lent probe's limit passes, to be the probe if
    nobody else is; released, it takes
    its paced turn in the ramp (``wait_turn_sync``, slept by ``sleep``). The
    hold also ends on the real clock, so that an injected clock that stands
    still cannot stretch it.

    Interrupted (``KeyboardInterrupt`` in the main thread), it leaves no trace: its
    place in the queue and a ramp turn it was given go back. So does a permit it
    took if the interrupt lands while ``flush`` tells what the hold did (taking a
    probe's turn moves the breaker to half-open; log handlers and plugins run
    there): the caller never had it.
    """
    permit = None
    try:
        permit = _held_thread(breaker, clock, deadline_at, stats, lock, sleep)
    finally:
        try:
            flush()
        except BaseException:  # the caller never gets the permit: a probe's turn goes back
            if permit is not None:
                with lock:
                    breaker.release(permit)
            raise
    return permit


def _held_thread(
    breaker: Breaker,
    clock: Callable[[], float],
    deadline_at: float | None,
    stats: KeyStats | None,
    lock: threading.RLock,
    sleep: Callable[[float], None],
) -> Permit | None:
    now = clock()
    until = _hold_end(breaker, now, deadline_at)
    real_end = _monotonic() + (until - now)
    for _ in range(MAX_ROUNDS):
        with lock:
            joined = _join(breaker, now, until, stats, breaker.hold_thread)
            if joined is None:
                return None
            turn, waiter = joined
            stats = None  # counted once per call
        try:  # queued: from here an interrupt must take it out again
            # a probe's turn may come free (open: due; a lent probe's limit): wake to take it
            wake = until if turn is None else min(now + turn, until)
            real_wake = min(_monotonic() + (wake - now), real_end)
            _block(waiter, clock, wake, real_wake)
        except BaseException:  # interrupted (KeyboardInterrupt in the main thread)
            with lock:
                breaker.unhold(waiter)
                if _turn_given(breaker, waiter):
                    breaker.leave_turn()  # released into the ramp as it was interrupted
            raise
        with lock:
            breaker.unhold(waiter)  # not answered by now: it stops waiting, no trace left
        if not waiter.cancelled():
            go_at = waiter.result()  # answered (maybe as it woke)
        elif turn is None or _monotonic() > real_end:
            return None  # the hold ran out; a turn free at its very end is still asked for
        else:
            go_at = clock()  # a turn may be free: ask again, maybe be the probe
        if go_at is None:
            return None  # the probe failed, or the hold ran out
        if breaker.state is BreakerState.CLOSED:  # the probe succeeded: a turn in the ramp
            if deadline_at is not None and go_at >= deadline_at:
                with lock:
                    breaker.leave_turn()
                raise TurnPastDeadline  # the paced turn comes after the deadline
            wait_turn_sync(breaker, go_at, clock, lock, sleep)
        with lock:
            permit = breaker.admit()
        if permit is not None:
            return permit
        now = clock()
        if now >= until or _monotonic() >= real_end:
            return None
    return None


def _block(waiter: ThreadWaiter, clock: Callable[[], float], wake: float, real_wake: float) -> None:
    """Block until ``waiter`` is answered, ``wake`` passes on ``clock`` or ``real_wake`` on
    the real clock (a clock of the ``Seawall``'s own is looked at every ``LOOK_AGAIN``)."""
    own_clock = clock is not _monotonic
    while not waiter.done():  # bounded: each turn waits out a share of the time left
        left = min(wake - clock(), real_wake - _monotonic())
        if left <= 0:
            return
        waiter.wait(min(left, LOOK_AGAIN) if own_clock else left)


def _turn_given(breaker: Breaker, waiter: Waiter) -> bool:
    """The waiter was answered with a turn in the ramp (the probe succeeded)."""
    return (
        waiter.done()
        and not waiter.cancelled()
        and waiter.result() is not None
        and breaker.state is BreakerState.CLOSED
    )


def _hold_end(breaker: Breaker, now: float, deadline_at: float | None) -> float:
    """When a hold that starts ``now`` ends: the breaker's span, never past the deadline."""
    until = now + breaker.hold_span()
    return until if deadline_at is None else min(until, deadline_at)
