"""The breaker's rules, one at a time, on an injected clock (no server, no waits).

These pin what a mutation probe found untested: closing clears the window, a
stale permit cannot decide a half-open breaker, recovery is jittered.
"""

from __future__ import annotations

import random

import pytest

import seawall
from seawall.breaker import Breaker, BreakerState
from seawall.breaker_parts import _Ramp, _Throttle

from .test_breaker import RECOVERED, Clock, _breaker, _fail, _failed_call, _succeed, _two_probes

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def _trip_by_rate(breaker: Breaker) -> None:
    """Two successes then two failures: a 50 % failure rate over four calls."""
    _succeed(breaker, 2)
    _fail(breaker, 2)
    assert breaker.state is OPEN


def _recover(breaker: Breaker, clock: Clock) -> None:
    clock.advance(breaker.policy.recovery_timeout)
    _succeed(breaker)
    assert breaker.state is CLOSED


def test_closing_clears_the_failure_window() -> None:
    """After recovery the old failures are forgotten: one new failure cannot reopen it."""
    clock = Clock()
    breaker, _ = _breaker(
        clock, window=10, minimum_calls=4, failure_rate=0.5, failure_threshold=100
    )
    _trip_by_rate(breaker)
    _recover(breaker, clock)
    assert breaker.failure_rate == 0.0
    _fail(breaker)
    assert breaker.state is CLOSED
    assert breaker.failure_rate == 1.0  # one failure among one call: the window restarted
    _succeed(breaker, 2)
    _fail(breaker)
    assert breaker.state is OPEN  # 2 of 4: the rate rule works again on the new window


def test_closing_forgets_consecutive_failed_calls() -> None:
    """Failed calls before the breaker opened do not count towards the next trip."""
    clock = Clock()
    breaker, _ = _breaker(clock, failure_threshold=3, recovery_timeout=5.0)
    _failed_call(breaker, 3)
    assert breaker.state is OPEN
    _recover(breaker, clock)
    assert breaker.consecutive_failures == 0
    _failed_call(breaker, 2)
    assert breaker.state is CLOSED
    _failed_call(breaker)
    assert breaker.state is OPEN


def test_a_stale_permit_cannot_decide_a_half_open_breaker() -> None:
    """An attempt admitted while closed and answered during half-open is stale news."""
    clock = Clock()
    breaker, _ = _breaker(clock, failure_threshold=1, recovery_timeout=10.0)
    stale_ok, stale_bad = breaker.admit(), breaker.admit()
    assert stale_ok is not None
    assert stale_bad is not None
    _failed_call(breaker)
    clock.advance(10.0)
    probe = breaker.admit()
    assert probe is not None
    assert breaker.state is HALF_OPEN
    breaker.record(stale_ok, failure=False)
    assert breaker.state is HALF_OPEN
    breaker.record(stale_bad, failure=True)
    assert breaker.state is HALF_OPEN
    assert breaker.admit() is None  # the probe's slot is still taken
    breaker.record(probe, failure=False)
    assert breaker.state is CLOSED


def test_stale_news_while_open_changes_nothing() -> None:
    clock = Clock()
    breaker, moves = _breaker(clock, failure_threshold=1, recovery_timeout=10.0)
    stale = breaker.admit()
    assert stale is not None
    _failed_call(breaker)
    breaker.record(stale, failure=False)
    breaker.record(stale, failure=True)
    breaker.succeeded()
    assert breaker.state is OPEN
    assert [m.new for m in moves] == [OPEN]


def test_recovery_is_jittered_down_by_at_most_a_fifth() -> None:
    """Breakers that open together probe at different moments, all within the timeout."""
    clock = Clock()
    policy = seawall.BreakerPolicy(failure_threshold=1, recovery_timeout=10.0)
    waits = []
    for seed in range(40):
        breaker = Breaker("k", policy, clock, rng=random.Random(seed))
        _failed_call(breaker)
        waits.append(breaker.retry_after())
    assert all(8.0 <= w <= 10.0 for w in waits), waits
    assert len(set(waits)) == len(waits)  # no two in step
    assert min(waits) < 8.5
    assert max(waits) > 9.5


def test_each_breaker_jitters_by_default() -> None:
    """Without an injected generator, breakers still do not probe in step."""
    clock = Clock()
    policy = seawall.BreakerPolicy(failure_threshold=1, recovery_timeout=10.0)
    waits = set()
    for _ in range(10):
        breaker = Breaker("k", policy, clock)
        _failed_call(breaker)
        waits.add(breaker.retry_after())
    assert len(waits) > 1


def test_open_state_answers_questions_on_the_clock() -> None:
    """retry_after counts down to the probe; is_open is true only until then."""
    clock = Clock()
    breaker, _ = _breaker(clock, failure_threshold=1, recovery_timeout=10.0)
    assert breaker.retry_after() == 0.0
    assert not breaker.is_open()
    _failed_call(breaker)
    assert breaker.opened_at == clock.now
    wait = breaker.retry_after()
    assert 8.0 <= wait <= 10.0
    assert breaker.is_open()
    clock.advance(wait / 2)
    assert breaker.retry_after() == pytest.approx(wait / 2)
    assert breaker.admit() is None
    clock.advance(wait / 2 - 0.01)
    assert breaker.is_open()
    clock.advance(0.02)
    assert not breaker.is_open()
    assert breaker.retry_after() == 0.0
    clock.advance(100.0)
    assert breaker.retry_after() == 0.0
    assert breaker.admit() is not None
    assert breaker.retry_after() == 0.0  # half-open: nothing to wait for
    assert not breaker.is_open()


def test_the_rate_rule_waits_for_minimum_calls_and_the_threshold() -> None:
    clock = Clock()
    breaker, moves = _breaker(
        clock, window=10, minimum_calls=5, failure_rate=0.6, failure_threshold=100
    )
    _fail(breaker, 4)
    assert breaker.state is CLOSED  # four calls: below minimum_calls
    assert breaker.failure_rate == 1.0
    _succeed(breaker, 3)
    assert breaker.failure_rate == pytest.approx(4 / 7)
    _fail(breaker)  # 5 of 8 = 0.625 >= 0.6
    assert breaker.state is OPEN
    [move] = moves
    assert (move.old, move.new) == (CLOSED, OPEN)
    assert move.failure_rate == pytest.approx(5 / 8)
    assert move.key == "k"


def test_the_rate_rule_trips_exactly_at_the_threshold() -> None:
    clock = Clock()
    breaker, _ = _breaker(clock, window=4, minimum_calls=4, failure_rate=0.5)
    _succeed(breaker, 2)
    _fail(breaker)
    assert breaker.state is CLOSED  # 1 of 3, and below minimum_calls
    _fail(breaker)
    assert breaker.state is OPEN  # exactly 0.5


def test_the_window_slides() -> None:
    """Old calls leave the window: failures that slid out no longer count."""
    clock = Clock()
    breaker, _ = _breaker(clock, window=4, minimum_calls=4, failure_rate=0.75)
    _fail(breaker, 2)
    _succeed(breaker, 4)  # both failures slid out
    assert breaker.failure_rate == 0.0
    _fail(breaker, 2)
    assert breaker.failure_rate == 0.5
    assert breaker.state is CLOSED
    _fail(breaker)
    assert breaker.state is OPEN


def test_succeeded_slides_the_window_like_record() -> None:
    """The success fast path keeps the same window as ``record``."""
    clock = Clock()
    breaker, _ = _breaker(clock, window=3, minimum_calls=3, failure_rate=0.6)
    _fail(breaker)
    assert not breaker.quiet
    breaker.succeeded()
    breaker.succeeded()
    assert breaker.failure_rate == pytest.approx(1 / 3)
    assert not breaker.quiet
    breaker.succeeded()  # the failure slid out: the window is all successes
    assert breaker.failure_rate == 0.0
    assert breaker.quiet
    _fail(breaker)
    assert not breaker.quiet
    _fail(breaker)
    assert breaker.state is OPEN


def test_succeeded_resets_consecutive_failed_calls() -> None:
    clock = Clock()
    breaker, _ = _breaker(clock, failure_threshold=2)
    _failed_call(breaker)
    breaker.succeeded()
    _failed_call(breaker)
    assert breaker.state is CLOSED
    _failed_call(breaker)
    assert breaker.state is OPEN


def test_success_threshold_needs_that_many_probes() -> None:
    clock = Clock()
    breaker, moves, first, second = _two_probes(clock)
    breaker.record(first, failure=False)
    assert breaker.state is HALF_OPEN
    breaker.record(first, failure=False)  # the same permit twice counts once
    assert breaker.state is HALF_OPEN
    breaker.record(second, failure=False)
    assert breaker.state is CLOSED
    assert [m.new for m in moves] == RECOVERED
    assert breaker.opened_at is None


def test_a_failed_probe_reopens_for_a_fresh_timeout() -> None:
    clock = Clock()
    breaker, _ = _breaker(clock, failure_threshold=1, recovery_timeout=10.0, success_threshold=2)
    _failed_call(breaker)
    clock.advance(10.0)
    _succeed(breaker)  # one of two successes
    _fail(breaker)
    assert breaker.state is OPEN
    assert breaker.opened_at == clock.now
    assert breaker.retry_after() >= 8.0
    clock.advance(10.0)
    _succeed(breaker)
    assert breaker.state is HALF_OPEN  # the earlier success was forgotten on reopening
    _succeed(breaker)
    assert breaker.state is CLOSED


def test_released_probes_are_given_back_once() -> None:
    breaker, _, first, second = _two_probes(Clock(), success_threshold=1)
    breaker.release(first)
    breaker.release(first)  # twice: still only one slot back
    assert breaker.admit() is not None
    assert breaker.admit() is None
    breaker.record(second, failure=True)
    assert breaker.state is OPEN


def test_a_released_probe_after_reopening_frees_nothing() -> None:
    breaker, _, first, second = _two_probes(Clock(), success_threshold=1)
    breaker.record(first, failure=True)  # reopens
    breaker.release(second)
    breaker.record(second, failure=False)  # already given back: ignored
    assert breaker.state is OPEN


def test_call_failed_counts_only_while_closed_and_enabled() -> None:
    clock = Clock()
    breaker, moves = _breaker(clock, enabled=False, failure_threshold=1)
    _failed_call(breaker, 3)
    breaker.succeeded()
    assert breaker.state is CLOSED
    assert breaker.consecutive_failures == 0
    assert breaker.failure_rate == 0.0
    assert moves == []


def test_transitions_report_the_counts_at_the_time() -> None:
    clock = Clock()
    breaker, moves = _breaker(clock, failure_threshold=2, recovery_timeout=1.0)
    _failed_call(breaker, 2)
    clock.advance(1.0)
    _succeed(breaker)
    opened, half, closed = moves
    assert (opened.old, opened.new, opened.consecutive_failures) == (CLOSED, OPEN, 2)
    assert (half.old, half.new) == (OPEN, HALF_OPEN)
    assert (closed.old, closed.new, closed.consecutive_failures) == (HALF_OPEN, CLOSED, 0)
    assert closed.failure_rate == 0.0


def test_the_adaptive_window_forgets_a_request_after_one_window_bucket_by_bucket() -> None:
    """Ten buckets of a tenth of ``throttle_window`` each: a request counts until its
    bucket is a whole window old, then drops out, while a later one still counts.
    SRE's refusal is ``(requests - k * accepts) / (requests + 1)``."""
    throttle = _Throttle(10.0)  # buckets of 1 s
    throttle.add(0.95, False)  # in the first bucket
    throttle.add(1.05, False)  # in the second
    assert throttle.refusal(9.99, 2.0) == pytest.approx(2 / 3)
    assert throttle.refusal(10.0, 2.0) == pytest.approx(1 / 2)  # the first bucket's gone
    assert throttle.refusal(11.0, 2.0) == 0.0


def test_the_adaptive_refusal_is_never_below_zero() -> None:
    throttle = _Throttle(10.0)
    for _ in range(3):
        throttle.add(0.5, True)
    assert throttle.refusal(0.5, 2.0) == 0.0


def test_a_ramp_lets_a_call_half_a_gap_early_go_at_once() -> None:
    """Timer jitter below half a gap neither delays a call nor slows the ramp; more early
    than that, it waits for its spaced moment."""
    ramp = _Ramp(0.0, 1.0)
    assert ramp.depart(0.0) == 0.0
    assert ramp.depart(0.5) == 0.0  # due at 1.0: half a gap early still goes
    assert ramp.depart(0.75) == pytest.approx(0.75)  # due at 1.5: a quarter too early
