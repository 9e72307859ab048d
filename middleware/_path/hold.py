"""The breaker's admit step with holding: wait for a near probe verdict instead of failing.

While a key's breaker is open or half-open, a call whose next probe verdict
is expected within ``BreakerPolicy.hold`` seconds (and before its deadline)
waits for it (``Breaker.hold``): when the probe succeeds it goes, at the
paced slot the breaker gave it; when the probe fails or the hold runs out it
fails with ``CircuitOpenError``, as every call did before. A held call that
is cancelled leaves nothing behind (``Breaker.unhold``). A held call may
become the probe itself: it wakes when the probe is due and asks again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from seawall import _testmode
from seawall.breaker import Breaker, BreakerState, Permit
from seawall.stats import KeyStats

__all__ = ["held", "wait_turn"]

#: Waits one held call may go through (verdicts, due probes, permits taken by
#: others); each ends by the hold's end, so this only bounds the loop.
MAX_ROUNDS = 32


async def held(
    breaker: Breaker,
    clock: Callable[[], float],
    deadline_at: float | None,
    stats: KeyStats | None = None,
    lock: threading.RLock | None = None,
    flush: Callable[[], None] | None = None,
) -> Permit | None:
    """After ``breaker.admit()`` said no: a permit once the verdict came, or ``None``: fail.

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
    until = now + breaker.hold_span()
    if deadline_at is not None:
        until = min(until, deadline_at)
    loop = asyncio.get_running_loop()
    # The hold on the loop's own clock too, so that an injected clock that
    # stands still cannot stretch it.
    real_end = loop.time() + (until - now)
    for _ in range(MAX_ROUNDS):
        with lock:
            due = breaker.verdict_in()
            if due is None or now + due > until:
                return None  # no verdict coming, or not within the hold: fail at once
            waiter = breaker.hold(until)
            if waiter is None:
                return None  # hold=0, or enough calls wait already
            if stats is not None:
                stats.held += 1
                stats = None  # once per call
        # Open: wake when the probe is due, to send it if nobody else does.
        probe_due = due > 0
        wake = min(now + due, until) if probe_due else until
        go_at = None
        try:
            timeout = min(wake - now, real_end - loop.time())
            async with asyncio.timeout(max(0.0, timeout)):
                go_at = await asyncio.shield(waiter)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                go_at = waiter.result()  # answered as the timer fired
            elif not probe_due or loop.time() > real_end:
                # the hold ran out; a probe due at its very end is still asked for
                return None
            else:
                go_at = clock()  # the probe is due: ask again, maybe send it
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
                return None  # the paced turn comes after the deadline
            await wait_turn(breaker, go_at, clock, lock)
        with lock:
            permit = breaker.admit()
        if permit is not None:
            return permit
        now = clock()
        if now >= until or loop.time() >= real_end:
            return None
    return None


async def wait_turn(
    breaker: Breaker,
    ticket: float,
    clock: Callable[[], float],
    lock: threading.RLock | None = None,
) -> None:
    """Wait for a turn in the ramp after a recovery (``Breaker.turn``, or a held call's).

    Sleep until the ticket is due, then leave at least a gap after the last
    departure (``Breaker.depart``): callers that a stalled loop wakes late
    and together leave spaced, not as a bunch. A ramp that ended meanwhile
    (a cooldown took over, or the breaker opened) spaces nobody any more.
    ``lock``: the key's lock, taken around the breaker's books.
    """
    if lock is None:
        lock = threading.RLock()  # a breaker of the caller's own, shared with no thread
    wait = ticket - clock()
    if wait > 0:
        try:
            await _testmode.sleep(wait)
        except BaseException:
            with lock:
                breaker.leave_turn()  # cancelled: the turn is free for the next call
            raise
    with lock:
        wait = breaker.depart()
    if wait > 0:
        await _testmode.sleep(wait)


def _turn_given(breaker: Breaker, waiter: asyncio.Future[float | None]) -> bool:
    """The waiter was answered with a turn in the ramp (the probe succeeded)."""
    return (
        waiter.done()
        and not waiter.cancelled()
        and waiter.result() is not None
        and breaker.state is BreakerState.CLOSED
    )
