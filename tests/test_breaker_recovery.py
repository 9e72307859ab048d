"""Recovery without loss: the hold stretches to the probe interval under traffic, and
the calls released after a recovery queue with new arrivals (the ramp). Test clock only."""

from __future__ import annotations

import asyncio

import pytest

import seawall
from seawall._path.hold import ramp_ticket
from seawall.breaker import DRAIN_SHARE, HOLD_STRETCH, BreakerState
from seawall.cooldown import Cooldown

from .test_breaker import Clock
from .test_breaker_hold import (
    Upstream,
    _breaker,
    _cancelled_as_released,
    _open,
    _probe,
    _recovered,
    _seawall,
    _trip,
    _tripped,
    _until,
)


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (0.0, 0.25),  # no traffic known: the policy's hold
        (100.0, 0.4),  # the probe interval, 1 / (0.025 * 100)
        (10.0, HOLD_STRETCH * 0.25),  # interval 2 s: stretched at most HOLD_STRETCH holds
        (1000.0, 0.25),  # the interval is the hold already
    ],
)
def test_the_hold_stretches_to_the_probe_interval_under_traffic(
    rate: float, expected: float
) -> None:
    breaker = _breaker(Clock(), recovery_timeout=2.0, hold=0.25, probe_share=0.025)
    breaker.rate = rate
    assert breaker.hold_span() == pytest.approx(expected)


def test_hold_zero_never_stretches() -> None:
    breaker = _breaker(Clock(), recovery_timeout=2.0, hold=0.0)
    breaker.rate = 100.0
    assert breaker.hold_span() == 0.0


async def test_a_call_further_than_hold_from_the_probe_is_held_under_traffic() -> None:
    """The gap that lost calls after a recovery: the probe 0.35 s away, hold 0.25 s."""
    clock, up = Clock(), Upstream()
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(
            failure_threshold=1, recovery_timeout=2.0, hold=0.25, probe_share=0.025
        ),
        timeout=seawall.TimeoutPolicy(attempt=None, deadline=100.0),
    )
    sw = seawall.Seawall(policy, clock=clock, entrypoints=False)
    breaker = await _open(sw, up)
    breaker.rate = 100.0  # traffic known: probes every 0.4 s, so holds up to 0.4 s
    clock.advance(breaker.retry_after() - 0.35)
    held = asyncio.create_task(sw.call(up, "held", key="up"))
    await _until(lambda: breaker.held == 1)  # before: CircuitOpenError at once
    clock.advance(0.35)
    up.gate.set()
    assert await sw.call(up, "probe", key="up") == "probe"  # the probe, sent by a new call
    assert breaker.state is BreakerState.CLOSED
    assert await held == "held"
    assert up.calls == ["trip", "probe", "held"]


def _released(clock: Clock, held: int) -> tuple[seawall.breaker.Breaker, list[float], float]:
    """A breaker that just closed with ``held`` calls released at 100 calls/s: tickets, gap."""
    breaker = _tripped(clock)
    breaker.rate = 100.0
    probe = _probe(breaker, clock)
    waiters = [breaker.hold(clock.now + 1.0) for _ in range(held)]
    breaker.record(probe, failure=False)
    tickets = [w.result() for w in waiters if w is not None]
    assert all(t is not None for t in tickets)
    return breaker, [t for t in tickets if t is not None], 1.0 / ((1.0 + DRAIN_SHARE) * 100.0)


async def test_new_arrivals_queue_behind_released_calls() -> None:
    clock = Clock()
    breaker, tickets, gap = _released(clock, 3)
    start = clock.now
    assert tickets == pytest.approx([start, start + gap, start + 2 * gap])
    assert breaker.turn() == pytest.approx(start + 3 * gap)  # a new call goes after the held
    assert breaker.turn() == pytest.approx(start + 4 * gap)
    for _ in range(5):  # each leaves when its turn is due
        assert breaker.depart() == 0.0
        clock.advance(gap)
    clock.advance(0.5 * gap)  # past the last booked turn (5 gaps)
    assert breaker.turn() is None  # the backlog drained: the ramp is over
    assert breaker.ramp_until == 0.0


async def test_the_ramp_ends_when_its_queue_would_outlast_a_hold() -> None:
    """A rate measured too low must not queue calls for ever."""
    clock = Clock()
    breaker = _tripped(clock, hold=0.01)
    breaker.rate = 100.0  # hold span: min(0.4, 4 * 0.01) = 0.04 s
    probe = _probe(breaker, clock)
    waiters = [breaker.hold(clock.now + 1.0) for _ in range(10)]
    breaker.record(probe, failure=False)
    assert all(w is not None and w.done() for w in waiters)
    assert breaker.turn() is None  # the next turn is 10 gaps (0.083 s) away: go now
    assert breaker.ramp_until == 0.0


async def test_no_ramp_without_held_calls_and_none_after_a_reopening() -> None:
    clock = Clock()
    breaker = _tripped(clock)
    breaker.rate = 100.0
    breaker.record(_probe(breaker, clock), failure=False)
    assert breaker.ramp_until == 0.0  # nobody was held: nothing to queue behind
    _trip(breaker)
    probe = _probe(breaker, clock)
    assert breaker.hold(clock.now + 1.0) is not None
    breaker.record(probe, failure=False)
    assert breaker.ramp_until > clock.now
    _trip(breaker)
    assert breaker.ramp_until == 0.0


async def test_a_new_call_takes_a_turn_in_the_ramp_through_sw_call() -> None:
    """The request path books a ramp turn for a call that arrives while the backlog drains."""
    clock, up = Clock(), Upstream()
    sw = _seawall(clock)
    breaker, gap = await _recovered(sw, up, clock)
    assert await sw.call(up, "new", key="up") == "new"
    assert breaker.ramp_until == pytest.approx(clock.now + 2 * gap)  # it took the next turn
    assert up.calls == ["trip", "probe", "held", "new"]


async def test_the_lean_path_of_sw_call_does_not_jump_the_ramp() -> None:
    """A key whose route may take ``sw.call``'s lean first attempt still queues in the ramp."""
    clock, up = Clock(), Upstream()
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(failure_threshold=1, recovery_timeout=2.0, hold=5.0),
        timeout=seawall.TimeoutPolicy(attempt=30.0, deadline=None),  # Route.fast: lean
    )
    sw = seawall.Seawall(policy, clock=clock, entrypoints=False)
    assert sw.registry.call_route("up", None).fast
    breaker, gap = await _recovered(sw, up, clock)
    assert await sw.call(up, "new", key="up") == "new"
    assert breaker.ramp_until == pytest.approx(clock.now + 2 * gap)  # it took a turn too


async def test_callers_a_stalled_loop_wakes_together_leave_a_gap_apart() -> None:
    """The peers' after-recovery peak: a stall woke every ramp sleeper at once, and all
    of them went in the same 100 ms (the tickets' times had all passed)."""
    clock = Clock()
    breaker, tickets, gap = _released(clock, 5)
    assert tickets == pytest.approx([clock.now + i * gap for i in range(5)])
    clock.advance(10 * gap)  # the loop stalled: every ticket is past due
    waits = [breaker.depart() for _ in tickets]
    assert waits == pytest.approx([0.0, gap, 2 * gap, 3 * gap, 4 * gap])


async def test_departures_on_time_are_not_slowed_by_timer_jitter() -> None:
    """A caller woken a little late does not push the ones behind it: no drift."""
    clock = Clock()
    breaker, tickets, gap = _released(clock, 4)
    start = clock.now
    for ticket in tickets:
        clock.now = ticket + 0.4 * gap  # every timer fires 0.4 gap late
        assert breaker.depart() == 0.0
    assert clock.now == pytest.approx(start + 3.4 * gap)


async def test_a_stall_does_not_end_the_ramp_while_callers_still_wait() -> None:
    """New arrivals queue behind callers that a stall left past their turn (they jumped them)."""
    clock = Clock()
    breaker, _tickets, gap = _released(clock, 5)
    clock.advance(10 * gap)  # nobody has left yet
    ticket = breaker.turn()
    assert ticket == pytest.approx(clock.now)  # before: the ramp ended, the call went at once
    assert breaker.ramp_until > 0.0
    for _ in range(5):
        breaker.depart()
    assert breaker.depart() == pytest.approx(5 * gap)  # the arrival leaves after the five


async def test_a_cancelled_turn_lets_the_ramp_end() -> None:
    clock = Clock()
    breaker, tickets, gap = _released(clock, 1)
    assert breaker.depart() == 0.0
    ticket = breaker.turn()
    assert ticket == pytest.approx(tickets[0] + gap)
    breaker.leave_turn()  # its caller was cancelled while it slept
    clock.advance(2 * gap)
    assert breaker.turn() is None  # nobody waits: the ramp is over
    assert breaker.ramp_until == 0.0


async def test_a_cooldown_ending_the_ramp_stops_its_spacing() -> None:
    """Calls waiting for a turn when a cooldown takes over go on to it without the ramp's gaps."""
    clock = Clock()
    breaker, _tickets, _gap = _released(clock, 3)
    assert breaker.depart() == 0.0
    breaker.end_ramp()
    assert breaker.ramp_until == 0.0
    assert breaker.turn() is None  # new calls no longer queue
    assert [breaker.depart(), breaker.depart()] == [0.0, 0.0]  # no gap booked after the first


async def test_a_held_call_cancelled_as_it_is_released_gives_its_turn_back() -> None:
    """Its ticket counted as waiting for ever: the ramp never ended by itself."""
    clock, up = Clock(), Upstream()
    sw = _seawall(clock)
    breaker = await _cancelled_as_released(
        sw, up, clock, lambda: asyncio.create_task(sw.call(up, "held", key="up"))
    )
    assert breaker.turn() is None  # nobody waits: the ramp is over
    assert up.calls == ["trip"]


@pytest.mark.parametrize(
    ("until", "rate", "queued"),
    [(0.0, None, True), (5.0, None, False), (0.0, 50.0, False), (5.0, 50.0, False)],
)
async def test_a_cooldown_of_either_kind_ends_the_ramp_for_a_new_call(
    until: float, rate: float | None, queued: bool
) -> None:
    """A call arriving during the ramp queues for a turn, unless the key is cooling down:
    a pause after a 429 (``until``) or a learnt pace (``rate``), either alone, ends the
    ramp (the upstream's own pace rules) and the call goes on to the cooldown."""
    clock = Clock()
    breaker, _tickets, _gap = _released(clock, 3)
    cooldown = Cooldown(clock)
    cooldown.until = clock.now + until if until else 0.0
    cooldown.rate = rate
    ticket = ramp_ticket(breaker, cooldown)
    assert (ticket is not None) is queued
    assert bool(breaker.ramp_until) is queued
