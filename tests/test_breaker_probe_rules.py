"""The breaker's probes, held calls, ramp and request rate at their edges, on the test clock.

Written from ``make mutate``'s survivors: each test pins a rule that a small
change of ``seawall.breaker`` broke without any other test noticing.
"""

from __future__ import annotations

import pytest

from seawall.breaker import CLOSED_PERMIT, Breaker, BreakerState
from seawall.breaker_hold import MIN_SPAN, RATE_HORIZON

from .test_breaker import Clock, _breaker, _fail, _failed_call, _succeed
from .test_breaker_hold import Calls
from .test_breaker_hold import _breaker as _breaker_with_calls


def test_an_open_breaker_is_not_open_at_the_instant_its_probe_is_due() -> None:
    """``is_open`` agrees with ``admit``: at the due instant the probe may pass."""
    clock = Clock()
    breaker, _ = _breaker(clock, failure_threshold=1, recovery_timeout=10.0)
    _failed_call(breaker)
    clock.advance(breaker.retry_after() * 0.999)
    assert breaker.is_open()
    clock.advance(breaker.retry_after())  # exactly the due instant
    assert breaker.retry_after() == 0.0
    assert not breaker.is_open()
    permit = breaker.admit()
    assert permit is not None
    assert permit.probe


async def test_a_probe_success_short_of_the_threshold_wakes_as_many_held_calls_as_free_probes() -> (
    None
):
    """Two successes wanted, two probes at once: after the first success one probe is still
    in flight, so one held call (not all of them) is woken to be the next probe."""
    clock = Clock()
    breaker, _ = _breaker(
        clock,
        failure_threshold=1,
        recovery_timeout=10.0,
        hold=5.0,
        half_open_max_calls=2,
        success_threshold=2,
    )
    _failed_call(breaker)
    clock.advance(breaker.retry_after())
    first, second = breaker.admit(), breaker.admit()
    assert first is not None
    assert second is not None
    waiters = [breaker.hold(clock.now + 5.0) for _ in range(3)]
    breaker.record(first, failure=False)
    assert breaker.state is BreakerState.HALF_OPEN
    woken = [w for w in waiters if w is not None and w.done()]
    assert len(woken) == 1
    assert woken[0].result() == clock.now
    assert breaker.admit() is not None  # the woken call takes the free probe
    assert breaker.admit() is None


async def test_giving_back_a_permit_that_is_no_probe_wakes_no_held_call() -> None:
    """A call admitted before the breaker opened is cancelled while a probe flies: no probe
    permit came free, so the held calls keep waiting for the probe's verdict."""
    clock = Clock()
    breaker, _ = _breaker(clock, failure_threshold=1, recovery_timeout=10.0, hold=5.0)
    _failed_call(breaker)
    clock.advance(breaker.retry_after())
    probe = breaker.admit()
    assert probe is not None
    waiter = breaker.hold(clock.now + 5.0)
    assert waiter is not None
    breaker.release(CLOSED_PERMIT)
    assert not waiter.done()
    breaker.release(probe)  # the probe itself: now a held call may take it over
    assert waiter.done()


async def test_a_probe_given_back_after_the_breaker_reopened_wakes_no_held_call() -> None:
    """Two probes fly; one fails and the breaker opens again. The other, cancelled, is given
    back: the breaker is open, no probe came free, a newly held call keeps waiting."""
    clock = Clock()
    breaker, _ = _breaker(
        clock, failure_threshold=1, recovery_timeout=10.0, hold=20.0, half_open_max_calls=2
    )
    _failed_call(breaker)
    clock.advance(breaker.retry_after())
    failing, cancelled = breaker.admit(), breaker.admit()
    assert failing is not None
    assert cancelled is not None
    breaker.record(failing, failure=True)
    assert breaker.state is BreakerState.OPEN
    waiter = breaker.hold(clock.now + 20.0)  # waits for the next probe
    assert waiter is not None
    breaker.release(cancelled)
    assert not waiter.done()


def test_successes_after_a_recovery_count_in_the_failure_window() -> None:
    """After closing, successes fill the window again: a few failures among them do not
    reach the failure rate (they would if the successes were skipped as "quiet")."""
    clock = Clock()
    breaker, _ = _breaker(
        clock,
        failure_threshold=1000,
        failure_rate=0.5,
        minimum_calls=5,
        window=10,
        recovery_timeout=10.0,
    )
    _fail(breaker, 5)  # a run of minimum_calls failed attempts trips
    assert breaker.state is BreakerState.OPEN
    clock.advance(breaker.retry_after())
    _succeed(breaker)  # the probe
    assert breaker.state is BreakerState.CLOSED
    _succeed(breaker, 6)
    for failure in (True, False, True, False, True):
        permit = breaker.admit()
        assert permit is not None
        breaker.record(permit, failure=failure)
    assert breaker.failure_rate == pytest.approx(0.3)
    assert breaker.state is BreakerState.CLOSED


async def _ramp(clock: Clock, rate_calls: int = 100, count: int = 2) -> tuple[Breaker, float]:
    """A breaker closed by a probe with ``count`` held calls and a measured rate: in its
    ramp."""
    calls = Calls()
    breaker = _breaker_with_calls(
        clock, calls, failure_threshold=1, recovery_timeout=10.0, hold=1.0
    )
    permit = breaker.admit()
    assert permit is not None
    breaker.record(permit, failure=True)
    calls.requests += rate_calls
    clock.advance(1.0)
    breaker.call_failed()
    clock.advance(breaker.retry_after())
    probe = breaker.admit()
    assert probe is not None
    held = [breaker.hold(clock.now + 1.0) for _ in range(count)]
    breaker.record(probe, failure=False)
    assert all(w is not None and w.done() for w in held)
    assert breaker.ramp_until > clock.now
    return breaker, breaker.ramp_until


async def test_the_ramp_ends_at_its_end_instant() -> None:
    """The held calls have left, the last of them at the ramp's end (its next free turn): a
    call at that exact instant goes at once, and so do the ones after it."""
    clock = Clock()
    breaker, end = await _ramp(clock)
    assert breaker.depart() == 0.0  # the first held call, at once
    clock.now = end
    assert breaker.depart() == 0.0  # the second, late (its turn was a gap earlier)
    assert breaker.turn() is None
    assert breaker.ramp_until == 0.0
    assert breaker.turn() is None


async def test_a_turn_exactly_one_hold_away_is_still_booked() -> None:
    """A turn further than a hold away ends the ramp; one exactly a hold away is booked
    (its ticket: that turn)."""
    clock = Clock()
    breaker, end = await _ramp(clock, rate_calls=1, count=4)  # a slow rate: a long ramp
    span = breaker.hold_span()
    assert end - span > clock.now
    clock.now = end - span
    assert end - clock.now == span
    assert breaker.turn() == end
    assert breaker.ramp_until > end


async def test_a_turn_exactly_one_hold_behind_is_still_booked() -> None:
    """Held calls still wait for their turns but the loop stalled: a next turn more than a
    hold in the past ends the ramp (nobody is left to wait for); one exactly a hold behind is
    booked, for now."""
    clock = Clock()
    breaker, end = await _ramp(clock)
    span = breaker.hold_span()
    clock.now = end + span
    assert clock.now - end == span
    assert breaker.turn() == clock.now
    clock.now = breaker.ramp_until + span * 1.01
    assert breaker.turn() is None


def test_the_rate_is_measured_from_a_failure_exactly_the_horizon_old() -> None:
    """The first failure marks where the rate is measured from; a failure exactly
    ``RATE_HORIZON`` later does not move the mark (only an older one is moved)."""
    clock, calls = Clock(), Calls()
    breaker = _breaker_with_calls(clock, calls, failure_threshold=2, recovery_timeout=30.0)
    _failed_call(breaker)  # the mark: now, 0 requests
    calls.requests += 50
    clock.advance(RATE_HORIZON)
    _failed_call(breaker)  # exactly the horizon later: the mark stays; the breaker opens
    assert breaker.state is BreakerState.OPEN
    assert breaker.rate == pytest.approx(50 / RATE_HORIZON)


def test_a_rate_over_exactly_the_shortest_span_is_measured() -> None:
    clock, calls = Clock(), Calls()
    clock.now = 0.0  # so that the span is exactly MIN_SPAN
    breaker = _breaker_with_calls(clock, calls, failure_threshold=2, recovery_timeout=30.0)
    _failed_call(breaker)
    calls.requests += 10
    clock.advance(MIN_SPAN)
    _failed_call(breaker)
    assert breaker.state is BreakerState.OPEN
    assert breaker.rate == pytest.approx(10 / MIN_SPAN)


async def test_a_call_that_stopped_waiting_frees_its_place_among_the_held() -> None:
    """``hold_max_calls`` counts calls still waiting: one that left behind another (still in
    the queue, not yet pruned) does not keep a newcomer out."""
    clock = Clock()
    breaker, _ = _breaker(
        clock, failure_threshold=1, recovery_timeout=10.0, hold=5.0, hold_max_calls=2
    )
    _failed_call(breaker)
    first = breaker.hold(clock.now + 5.0)
    left = breaker.hold(clock.now + 5.0)
    assert first is not None
    assert left is not None
    breaker.unhold(left)
    assert breaker.hold(clock.now + 5.0) is not None
    assert breaker.hold(clock.now + 5.0) is None  # two wait now: the cap


def test_a_success_while_open_leaves_the_failure_window_alone() -> None:
    """The success path's ``succeeded`` while the breaker is open (a call admitted before it
    opened) changes neither the window nor the run that opened it."""
    clock = Clock()
    breaker, _ = _breaker(
        clock, failure_threshold=1000, failure_rate=0.5, minimum_calls=4, window=10
    )
    _succeed(breaker, 4)
    _fail(breaker, 4)
    assert breaker.state is BreakerState.OPEN
    rate = breaker.failure_rate
    breaker.succeeded()
    assert breaker.failure_rate == rate


def test_under_load_a_hold_stretches_to_the_probe_interval_but_at_most_four_holds() -> None:
    """BreakerPolicy's promise: a call waits up to the next probe, at most four ``hold``."""
    breaker = _breaker_with_calls(Clock(), recovery_timeout=30.0, hold=0.5, probe_share=0.025)
    breaker.rate = 20.0  # a probe every 1 / (0.025 * 20) = 2 s: the hold stretches to it
    assert breaker.hold_span() == pytest.approx(2.0)
    breaker.rate = 2.0  # every 20 s: the hold stretches to four holds only
    assert breaker.hold_span() == pytest.approx(4 * 0.5)
    breaker.rate = 200.0  # every 0.2 s: never shorter than the hold itself
    assert breaker.hold_span() == pytest.approx(0.5)


async def test_after_a_recovery_the_queue_drains_at_1_10_times_the_request_rate() -> None:
    """BreakerPolicy's promise: held calls and new arrivals leave at 1.10x the rate."""
    clock = Clock()
    breaker, end = await _ramp(clock)
    rate = breaker.rate
    assert rate > 0
    assert end - clock.now == pytest.approx(2 / (1.10 * rate))  # two held calls
    assert breaker.turn() == pytest.approx(end)
    assert breaker.ramp_until - end == pytest.approx(1 / (1.10 * rate))


def test_below_one_call_a_second_probes_still_follow_the_request_rate() -> None:
    """Half a call a second, probes at 0.05 of the requests: a probe every 40 s, sooner
    than the 60 s recovery timeout; the hold stretches towards it (four holds)."""
    breaker = _breaker_with_calls(Clock(), recovery_timeout=60.0, hold=1.0, probe_share=0.05)
    breaker.rate = 0.5
    assert breaker.probe_interval() == pytest.approx(40.0)
    assert breaker.hold_span() == pytest.approx(4.0)
