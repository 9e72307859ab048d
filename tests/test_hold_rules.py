"""The held call's side of holding (``seawall._path.hold.held``), on clocks the test moves.

A held call waits on two clocks: the breaker's (the injected one) and the event
loop's (so that an injected clock standing still cannot stretch a hold). Both
are the test's here: the breaker reads ``Clocks.now`` and the loop's ``time()``
reads ``Clocks.loop_now``; timers fire when the test moves the loop's clock
past them, never by real time passing. Progress is counted in loop turns.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

import seawall
from seawall._path.hold import TurnPastDeadline, held, wait_turn
from seawall.breaker import RAMP, Breaker, BreakerState, Permit
from seawall.stats import KeyStats

from .test_breaker_hold import _trip

T = TypeVar("T")


class Clocks(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when the test moves it, and a breaker clock."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0  # the breaker's (injected) clock
        self.loop_now = 0.0  # the loop's

    def time(self) -> float:
        return self.loop_now

    def breaker_clock(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Both clocks move on together."""
        self.now += seconds
        self.loop_now += seconds


@pytest.fixture
def clocks() -> Iterator[Clocks]:
    loop = Clocks()
    seawall.testing.set_testing(False)  # the paced sleeps are real sleeps, on this loop's clock
    try:
        yield loop
    finally:
        loop.close()


def run(loop: Clocks, scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``scenario`` on ``loop``: it awaits only bounded things (``turns``, calls that
    end without waiting), never a timer alone, which this loop would never fire."""
    return loop.run_until_complete(scenario())


async def turns(done: Callable[[], bool], count: int = 50) -> bool:
    """Let the loop run up to ``count`` turns (no time passes); whether ``done`` came true."""
    for _ in range(count):
        if done():
            return True
        await asyncio.sleep(0)
    return done()


async def ends_after(
    clocks: Clocks, call: asyncio.Future[Any], early: float, rest: float, *, loop_only: bool = False
) -> None:
    """``call`` still waits once the clocks moved ``early`` s on, and ends once they moved
    ``rest`` s more: it ends exactly then, not before. Both clocks move, or the loop's only."""

    def move(seconds: float) -> None:
        if loop_only:
            clocks.loop_now += seconds
        else:
            clocks.advance(seconds)

    move(early)
    assert not await turns(call.done, 20)
    move(rest)
    assert await turns(call.done)


def _breaker(loop: Clocks, **settings: object) -> Breaker:
    options: dict[str, object] = {"failure_threshold": 1, "recovery_timeout": 2.0, "hold": 5.0}
    options.update(settings)
    policy = seawall.BreakerPolicy(**options)  # type: ignore[arg-type]
    return Breaker("k", policy, loop.breaker_clock, rng=random.Random(3))


def _probe(breaker: Breaker, loop: Clocks) -> Permit:
    """Move to the probe's due time and take the probe: the breaker is half-open."""
    loop.advance(breaker.retry_after())
    permit = breaker.admit()
    assert permit is not None
    assert permit.probe
    return permit


def _half_open(loop: Clocks, **settings: object) -> tuple[Breaker, Permit]:
    """A breaker (``_breaker``'s settings) opened and then half-open: its probe taken."""
    breaker = _breaker(loop, **settings)
    _trip(breaker)
    return breaker, _probe(breaker, loop)


async def _ramped(
    breaker: Breaker, loop: Clocks, probe: Permit
) -> tuple[asyncio.Future[Any], asyncio.Future[Any]]:
    """Three calls held while half-open, then the probe succeeds: the first goes at once;
    the other two, paced by the ramp, are returned."""
    first, second, third = (
        asyncio.ensure_future(held(breaker, loop.breaker_clock, None)) for _ in "abc"
    )
    assert await turns(lambda: breaker.held == 3)
    breaker.record(probe, failure=False)
    assert await turns(first.done)
    return second, third


def test_a_call_held_while_open_takes_the_probe_when_it_is_due(clocks: Clocks) -> None:
    """Open, the probe due within the hold: the call waits, then is the probe, not before."""
    breaker = _breaker(clocks, recovery_timeout=1.0)  # due in 0.8-1 s
    _trip(breaker)
    due = breaker.retry_after()
    assert 0.0 < due <= 1.0

    async def scenario() -> None:
        call = asyncio.ensure_future(held(breaker, clocks.breaker_clock, None))
        assert await turns(lambda: breaker.held == 1)
        clocks.advance(due * 0.99)
        assert not await turns(call.done, 200)  # the probe is not due yet: it stays held
        assert breaker.held == 1
        clocks.advance(due * 0.01)
        assert await turns(call.done)
        permit = call.result()
        assert permit is not None
        assert permit.probe
        assert breaker.state is BreakerState.HALF_OPEN
        assert breaker.held == 0

    run(clocks, scenario)


def test_a_held_call_that_lost_the_probe_waits_for_its_verdict_counted_once(
    clocks: Clocks,
) -> None:
    """Woken when the probe is due, a call finds another took it: it waits again, for the
    probe's verdict, and goes when it succeeds; ``held`` counts it once."""
    breaker = _breaker(clocks, recovery_timeout=1.0)
    _trip(breaker)
    due = breaker.retry_after()
    stats = KeyStats()

    async def scenario() -> None:
        call = asyncio.ensure_future(held(breaker, clocks.breaker_clock, None, stats))
        assert await turns(lambda: breaker.held == 1)
        clocks.advance(due)
        probe = breaker.admit()  # another call takes the probe first, in the same instant
        assert probe is not None
        assert not await turns(call.done, 200)  # woken, it lost: it waits for the verdict
        assert breaker.held == 1
        breaker.record(probe, failure=False)  # its verdict: the breaker closes
        assert await turns(call.done)
        permit = call.result()
        assert permit is not None
        assert not permit.probe
        assert stats.held == 1

    run(clocks, scenario)


def test_a_call_whose_probe_is_due_after_its_hold_fails_at_once(clocks: Clocks) -> None:
    breaker = _breaker(clocks, recovery_timeout=10.0, hold=1.0)
    _trip(breaker)
    stats = KeyStats()

    async def scenario() -> None:
        assert await held(breaker, clocks.breaker_clock, None, stats) is None
        assert breaker.held == 0
        assert stats.held == 0  # it never waited

    run(clocks, scenario)


def test_a_hold_runs_out_on_the_loops_clock_though_the_breakers_stands_still(
    clocks: Clocks,
) -> None:
    """Half-open, the probe never answers: the held call fails when its hold has passed on
    the loop's clock, not before, while the injected clock does not move."""
    breaker, _ = _half_open(clocks, hold=0.5)

    async def scenario() -> None:
        call = asyncio.ensure_future(held(breaker, clocks.breaker_clock, None))
        assert await turns(lambda: breaker.held == 1)
        await ends_after(clocks, call, 0.49, 0.01, loop_only=True)
        assert call.result() is None
        assert breaker.held == 0

    run(clocks, scenario)


def test_a_hold_ends_at_the_calls_deadline(clocks: Clocks) -> None:
    breaker, _ = _half_open(clocks, hold=5.0)

    async def scenario() -> None:
        deadline_at = clocks.now + 0.25
        call = asyncio.ensure_future(held(breaker, clocks.breaker_clock, deadline_at))
        assert await turns(lambda: breaker.held == 1)
        await ends_after(clocks, call, 0.24, 0.01)
        assert call.result() is None

    run(clocks, scenario)


def test_held_calls_leave_at_their_paced_slots_not_before(clocks: Clocks) -> None:
    """The probe succeeds: the first held call goes at once, the others at their slots
    (spread over ``RAMP`` with no request rate known); one whose slot comes at its
    deadline fails instead of waiting for it (``TurnPastDeadline``: a deadline error)."""
    breaker, probe = _half_open(clocks)
    gap = RAMP / 3

    async def scenario() -> None:
        start = clocks.now
        first = asyncio.ensure_future(held(breaker, clocks.breaker_clock, None))
        second = asyncio.ensure_future(held(breaker, clocks.breaker_clock, None))
        # Its slot, 2 gaps on, is its deadline: too late to send. The ramp books turn
        # after turn, each a gap after the last: its slot is (start + gap) + gap, which
        # in floats is not always start + 2 * gap.
        late = asyncio.ensure_future(held(breaker, clocks.breaker_clock, start + gap + gap))
        assert await turns(lambda: breaker.held == 3)
        breaker.record(probe, failure=False)
        assert breaker.state is BreakerState.CLOSED
        assert await turns(lambda: first.done() and late.done())
        assert first.result() is not None
        assert isinstance(late.exception(), TurnPastDeadline)  # its caller's deadline error
        assert not second.done()
        await ends_after(clocks, second, gap * 0.99, gap * 0.01)
        assert second.result() is not None

    run(clocks, scenario)


def test_a_call_that_lost_the_probe_still_fails_when_its_hold_ends_on_the_loops_clock(
    clocks: Clocks,
) -> None:
    """The loop's clock ran ahead of the injected one: in its second wait too, the call
    gives up when the hold has passed on the loop's clock."""
    breaker = _breaker(clocks, recovery_timeout=1.0, hold=2.0)
    _trip(breaker)
    due = breaker.retry_after()
    begun = clocks.loop_now

    async def scenario() -> None:
        call = asyncio.ensure_future(held(breaker, clocks.breaker_clock, None))
        assert await turns(lambda: breaker.held == 1)
        clocks.advance(due)
        clocks.loop_now += 0.5  # the loop's clock runs ahead
        probe = breaker.admit()
        assert probe is not None
        assert not await turns(call.done, 200)
        assert breaker.held == 1
        clocks.loop_now = begun + 2.0 - 0.01
        assert not await turns(call.done, 20)
        clocks.loop_now = begun + 2.0  # the hold's end on the loop's clock
        assert await turns(call.done)
        assert call.result() is None
        assert breaker.held == 0

    run(clocks, scenario)


def test_a_verdict_that_comes_as_the_hold_ends_is_taken(clocks: Clocks) -> None:
    """The probe succeeds in the very turn the hold's timer fires: the call goes."""
    breaker, probe = _half_open(clocks, hold=0.5)

    async def scenario() -> None:
        call = asyncio.ensure_future(held(breaker, clocks.breaker_clock, None))
        assert await turns(lambda: breaker.held == 1)
        clocks.loop_now += 0.5  # the timer is due ...
        breaker.record(probe, failure=False)  # ... and the verdict comes before it fires
        assert await turns(call.done)
        permit = call.result()
        assert permit is not None
        assert not permit.probe

    run(clocks, scenario)


class _NoJitter(random.Random):
    """Recovery jitter of 0: the probe is due exactly ``recovery_timeout`` after the opening."""

    def random(self) -> float:
        return 0.0


def _exact_breaker(loop: Clocks) -> Breaker:
    """Probe due in exactly 1 s, hold exactly 1 s (both clocks' values are exact in floats)."""
    policy = seawall.BreakerPolicy(failure_threshold=1, recovery_timeout=1.0, hold=1.0)
    return Breaker("k", policy, loop.breaker_clock, rng=_NoJitter())


def test_a_call_whose_probe_is_due_exactly_at_its_holds_end_is_held(clocks: Clocks) -> None:
    """ "Within the hold" includes its end: the call waits, it does not fail at once."""
    breaker = _exact_breaker(clocks)
    _trip(breaker)
    assert breaker.retry_after() == 1.0
    stats = KeyStats()

    async def scenario() -> None:
        call = asyncio.ensure_future(held(breaker, clocks.breaker_clock, None, stats))
        assert await turns(lambda: breaker.held == 1)
        assert not call.done()
        assert stats.held == 1
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        assert breaker.held == 0

    run(clocks, scenario)


def test_a_call_held_until_its_probe_is_due_at_the_holds_end_takes_the_probe(
    clocks: Clocks,
) -> None:
    breaker = _exact_breaker(clocks)
    _trip(breaker)

    async def scenario() -> None:
        call = asyncio.ensure_future(held(breaker, clocks.breaker_clock, None))
        assert await turns(lambda: breaker.held == 1)
        clocks.advance(1.0)  # the probe is due, and the hold ends, on both clocks
        assert await turns(call.done)
        permit = call.result()
        assert permit is not None
        assert permit.probe

    run(clocks, scenario)


def test_a_ramp_turn_already_due_goes_without_a_loop_turn() -> None:
    """``wait_turn`` with a ticket due now or past, and nobody to space from: the call
    goes on in the same step, it does not yield to the event loop (a loop turn is a
    delay behind every other ready callback on a busy loop)."""
    now = 1000.0
    breaker = Breaker("k", seawall.BreakerPolicy(), lambda: now)
    for ticket in (now, now - 0.5):
        step = wait_turn(breaker, ticket, lambda: now)
        try:
            with pytest.raises(StopIteration):
                step.send(None)
        finally:
            step.close()


def test_a_call_that_gives_up_its_ramp_turn_frees_it_and_delays_nobody(clocks: Clocks) -> None:
    """Three held calls go paced after the probe's success; the second is cancelled while
    it sleeps until its turn. The third still leaves at its own turn (not early because
    the one before it left), and when it has gone the ramp is over: a new call goes at
    once, with no ticket, as nobody is left in the queue."""
    breaker, probe = _half_open(clocks)
    gap = RAMP / 3

    async def scenario() -> None:
        second, third = await _ramped(breaker, clocks, probe)
        assert not await turns(second.done, 20)
        second.cancel()
        assert await turns(second.done)
        await ends_after(clocks, third, gap * 1.99, gap * 0.01)
        assert third.result() is not None
        assert breaker.turn() is None

    run(clocks, scenario)


def test_held_calls_a_stalled_loop_wakes_together_still_leave_a_gap_apart(
    clocks: Clocks,
) -> None:
    """The loop stalls past every ramp turn: the calls it then wakes at once do not leave
    as a bunch; each leaves a gap after the one before it."""
    breaker, probe = _half_open(clocks)
    gap = RAMP / 3

    async def scenario() -> None:
        second, third = await _ramped(breaker, clocks, probe)
        clocks.advance(10 * gap)  # a stall: both turns are long past
        assert await turns(second.done)
        assert not await turns(third.done, 20)
        await ends_after(clocks, third, gap * 0.99, gap * 0.01)
        assert third.result() is not None

    run(clocks, scenario)


def test_a_call_cancelled_after_its_hold_expired_takes_nobodys_ramp_turn(
    clocks: Clocks,
) -> None:
    """The breaker closes after a held call's hold ran out on the breaker's clock: that
    call was failed (expired), the others got ramp turns. Cancelled before it ran again,
    it had no turn, so it gives none back: the ramp still queues a new call behind the
    call that is still waiting for its turn."""
    breaker, probe = _half_open(clocks)

    async def scenario() -> None:
        expired = asyncio.ensure_future(held(breaker, clocks.breaker_clock, clocks.now + 0.25))
        first = asyncio.ensure_future(held(breaker, clocks.breaker_clock, None))
        later = asyncio.ensure_future(held(breaker, clocks.breaker_clock, None))
        assert await turns(lambda: breaker.held == 3)
        clocks.now += 0.5  # the breaker's clock only: the first call's hold has run out
        breaker.record(probe, failure=False)  # closes: expired fails, the others get turns
        expired.cancel()  # before it runs again
        assert await turns(lambda: expired.done() and first.done())
        assert first.result() is not None
        assert not later.done()  # asleep until its turn
        assert breaker.turn() is not None  # a new call queues behind it
        later.cancel()  # not left pending when the loop closes
        await asyncio.gather(later, return_exceptions=True)

    run(clocks, scenario)
