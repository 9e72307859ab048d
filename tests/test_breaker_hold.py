"""Held calls, probes sized to the traffic, the run rule: on the test clock, no timings."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import attrs
import pytest

import seawall
from seawall.breaker import DRAIN_SHARE, RAMP, Breaker, BreakerState

from ._helpers import Clock


class Calls:
    """What ``KeyStats`` gives the breaker: the number of calls started."""

    def __init__(self) -> None:
        self.requests = 0


def _breaker(clock: Clock, calls: Calls | None = None, **settings: object) -> Breaker:
    policy = seawall.BreakerPolicy(**settings)  # type: ignore[arg-type]
    return Breaker("k", policy, clock, rng=random.Random(3), calls=calls)


def _trip(breaker: Breaker) -> None:
    permit = breaker.admit()
    assert permit is not None
    breaker.record(permit, failure=True)
    breaker.call_failed()
    assert breaker.state is BreakerState.OPEN


def _probe(breaker: Breaker, clock: Clock) -> seawall.breaker.Permit:
    """Move to the probe's due time and take the probe."""
    clock.advance(breaker.retry_after())
    permit = breaker.admit()
    assert permit is not None
    assert permit.probe
    return permit


def _tripped(clock: Clock, **settings: object) -> Breaker:
    """Opened by one failure: the probe due in about 10 s, calls held up to 1 s (unless
    ``settings`` say otherwise)."""
    options: dict[str, object] = {"failure_threshold": 1, "recovery_timeout": 10.0, "hold": 1.0}
    breaker = _breaker(clock, None, **(options | settings))
    _trip(breaker)
    return breaker


# --- the breaker's side: futures on the test clock ------------------------------------


async def test_held_calls_go_paced_when_the_probe_succeeds() -> None:
    clock = Clock()
    breaker = _tripped(clock)
    probe = _probe(breaker, clock)
    waiters = [breaker.hold(clock.now + 1.0) for _ in range(3)]
    assert all(w is not None for w in waiters)
    assert breaker.held == 3
    breaker.record(probe, failure=False)
    assert breaker.state is BreakerState.CLOSED
    slots = [w.result() for w in waiters if w is not None]
    gap = RAMP / 3  # no request rate known: spread over the ramp
    assert slots == pytest.approx([clock.now, clock.now + gap, clock.now + 2 * gap])
    assert breaker.held == 0


async def test_held_calls_are_paced_at_a_share_of_the_request_rate() -> None:
    clock, calls = Clock(), Calls()
    breaker = _breaker(clock, calls, failure_threshold=1, recovery_timeout=10.0, hold=1.0)
    permit = breaker.admit()
    assert permit is not None
    breaker.record(permit, failure=True)  # the rate is measured from here
    calls.requests += 100
    clock.advance(1.0)  # 100 calls/s
    breaker.call_failed()
    assert breaker.rate == pytest.approx(100.0)
    probe = _probe(breaker, clock)
    waiters = [breaker.hold(clock.now + 1.0) for _ in range(2)]
    breaker.record(probe, failure=False)
    gap = 1.0 / ((1.0 + DRAIN_SHARE) * breaker.rate)  # all calls share the ramp's queue
    assert [w.result() for w in waiters if w is not None] == pytest.approx(
        [clock.now, clock.now + gap]
    )


async def test_held_calls_fail_when_the_probe_fails() -> None:
    clock = Clock()
    breaker = _tripped(clock)
    probe = _probe(breaker, clock)
    waiter = breaker.hold(clock.now + 1.0)
    assert waiter is not None
    breaker.record(probe, failure=True)
    assert breaker.state is BreakerState.OPEN
    assert waiter.result() is None
    assert breaker.held == 0


async def test_held_calls_are_bounded_per_key() -> None:
    clock = Clock()
    breaker = _tripped(clock, hold_max_calls=2)
    assert breaker.hold(clock.now + 1.0) is not None
    assert breaker.hold(clock.now + 1.0) is not None
    assert breaker.hold(clock.now + 1.0) is None  # beyond the cap: fail at once
    assert breaker.held == 2


async def test_a_cancelled_waiter_leaves_no_trace() -> None:
    clock = Clock()
    breaker = _tripped(clock, hold_max_calls=1)
    probe = _probe(breaker, clock)
    gone = breaker.hold(clock.now + 1.0)
    assert gone is not None
    breaker.unhold(gone)
    assert breaker.held == 0
    stays = breaker.hold(clock.now + 1.0)  # its place is free again
    assert stays is not None
    breaker.record(probe, failure=False)
    assert stays.result() == clock.now  # first in line: the cancelled one took no slot


async def test_a_hold_that_runs_out_fails() -> None:
    clock = Clock()
    breaker = _tripped(clock)
    _probe(breaker, clock)
    early = breaker.hold(clock.now + 0.5)
    assert early is not None
    clock.advance(0.6)
    later = breaker.hold(clock.now + 1.0)  # the breaker notices on its next use
    assert early.result() is None
    assert later is not None
    assert not later.done()


async def test_hold_zero_is_the_classic_breaker() -> None:
    clock = Clock()
    breaker = _tripped(clock, hold=0.0)
    _probe(breaker, clock)
    assert breaker.hold(clock.now + 1.0) is None


async def test_a_released_probe_wakes_a_held_call_to_take_it_over() -> None:
    clock = Clock()
    breaker = _tripped(clock)
    probe = _probe(breaker, clock)
    waiter = breaker.hold(clock.now + 1.0)
    assert waiter is not None
    breaker.release(probe)  # the probe was cancelled
    assert waiter.result() == clock.now
    assert breaker.admit() is not None  # the woken call gets the probe


# --- probes sized to the traffic -------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (0.0, 2.0),  # no rate known: one probe per recovery interval
        (10.0, 2.0),  # 1 / (0.025 * 10) = 4 s: never fewer than one per recovery interval
        (100.0, 0.4),  # 1 / (0.025 * 100)
        (200.0, 0.25),  # 0.2 s would be more often than one per hold
        (5000.0, 0.25),
    ],
)
def test_probe_interval_follows_the_request_rate(rate: float, expected: float) -> None:
    breaker = _breaker(Clock(), recovery_timeout=2.0, hold=0.25, probe_share=0.025)
    breaker.rate = rate
    assert breaker.probe_interval() == pytest.approx(expected)


def test_probe_share_zero_probes_once_per_recovery_interval() -> None:
    breaker = _breaker(Clock(), recovery_timeout=2.0, probe_share=0.0)
    breaker.rate = 1000.0
    assert breaker.probe_interval() == 2.0


def test_an_open_breaker_probes_sooner_under_load() -> None:
    clock, calls = Clock(), Calls()
    breaker = _breaker(clock, calls, failure_threshold=1, recovery_timeout=30.0, hold=0.25)
    permit = breaker.admit()
    assert permit is not None
    breaker.record(permit, failure=True)
    calls.requests += 40
    clock.advance(0.2)  # 200 calls/s
    breaker.call_failed()
    assert 0.8 * 0.25 <= breaker.retry_after() <= 0.25  # not 30 s
    opened = clock.now
    probe = _probe(breaker, clock)
    clock.advance(1.0 - (clock.now - opened))
    calls.requests += 100  # the rate drops to 100/s: the average follows half-way
    breaker.record(probe, failure=True)
    assert breaker.rate == pytest.approx(150.0)
    interval = 1.0 / (0.025 * 150.0)
    assert 0.8 * interval <= breaker.retry_after() <= interval


# --- the run rule -----------------------------------------------------------------------


def test_a_run_of_minimum_calls_failed_attempts_trips() -> None:
    clock = Clock()
    breaker = _breaker(clock, failure_threshold=1000, minimum_calls=20, window=100)
    for _ in range(80):  # a window of successes would need 80 failures to reach 0.5
        breaker.succeeded()
    for _ in range(19):
        permit = breaker.admit()
        assert permit is not None
        breaker.record(permit, failure=True)
    assert breaker.state is BreakerState.CLOSED
    permit = breaker.admit()
    assert permit is not None
    breaker.record(permit, failure=True)
    assert breaker.state is BreakerState.OPEN


def test_one_success_breaks_the_run() -> None:
    clock = Clock()
    breaker = _breaker(clock, failure_threshold=1000, minimum_calls=20, window=100)
    for _ in range(80):
        breaker.succeeded()
    for index in range(30):
        permit = breaker.admit()
        assert permit is not None
        breaker.record(permit, failure=index != 15)
    assert breaker.state is BreakerState.CLOSED


# --- through sw.call, on the test clock ----------------------------------------------------


async def _until(condition: object, turns: int = 200) -> None:
    """Let the loop run until ``condition()`` holds (bounded in turns)."""
    for _ in range(turns):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


class Upstream:
    """An async function the calls go to; each call waits at the gate, then answers."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gate = asyncio.Event()
        self.fail = False

    async def __call__(self, name: str) -> str:
        self.calls.append(name)
        await self.gate.wait()
        if self.fail:
            raise ConnectionRefusedError("down")
        return name


def _seawall(
    clock: Clock, *, hold: float = 5.0, deadline: float = 100.0, hold_max_calls: int = 100
) -> seawall.Seawall:
    """One attempt a call; key ``"up"`` opens on one failed call and probes in about 2 s."""
    breaker = seawall.BreakerPolicy(
        failure_threshold=1, recovery_timeout=2.0, hold=hold, hold_max_calls=hold_max_calls
    )
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=breaker,
        timeout=seawall.TimeoutPolicy(attempt=None, deadline=deadline),
    )
    return seawall.Seawall(policy, clock=clock, entrypoints=False)


async def _open(sw: seawall.Seawall, up: Upstream) -> Breaker:
    up.fail, up.gate = True, asyncio.Event()
    up.gate.set()
    with pytest.raises(ConnectionRefusedError):
        await sw.call(up, "trip", key="up")
    up.fail, up.gate = False, asyncio.Event()
    breaker = sw.registry.view["up"].breaker
    assert breaker.state is BreakerState.OPEN
    return breaker


async def _probing(sw: seawall.Seawall, up: Upstream, clock: Clock) -> asyncio.Task[str]:
    """The breaker's probe, in flight at the gate."""
    breaker = sw.registry.view["up"].breaker
    clock.advance(breaker.retry_after())
    probe = asyncio.create_task(sw.call(up, "probe", key="up"))
    await _until(lambda: "probe" in up.calls)
    assert breaker.state is BreakerState.HALF_OPEN
    return probe


async def _probe_in_flight(
    **settings: float,
) -> tuple[seawall.Seawall, Upstream, Breaker, asyncio.Task[str]]:
    """A key ``"up"`` opened by a failed call, then its probe in flight at the gate."""
    clock, up = Clock(), Upstream()
    sw = _seawall(clock, **settings)
    breaker = await _open(sw, up)
    return sw, up, breaker, await _probing(sw, up, clock)


async def _recovered(sw: seawall.Seawall, up: Upstream, clock: Clock) -> tuple[Breaker, float]:
    """Key ``"up"`` opened at 100 calls/s, its probe in flight and a call ``"held"`` held
    behind it, then the probe's success: its breaker (``ramp_until`` set: new calls queue)
    and the ramp's gap."""
    breaker = await _open(sw, up)
    breaker.rate = 100.0
    probe = await _probing(sw, up, clock)
    held = asyncio.create_task(sw.call(up, "held", key="up"))
    await _until(lambda: breaker.held == 1)
    up.gate.set()
    assert await probe == "probe"
    assert await held == "held"
    gap = 1.0 / ((1.0 + DRAIN_SHARE) * breaker.rate)  # the rate as measured at the close
    assert breaker.ramp_until == pytest.approx(clock.now + gap)  # the held call's queue
    return breaker, gap


async def _cancelled_as_released(
    sw: seawall.Seawall, up: Upstream, clock: Clock, hold: Callable[[], asyncio.Task[str]]
) -> Breaker:
    """Key ``"up"`` opened at 100 calls/s and its probe taken (``admit``), a task ``hold()``
    held behind it, released into the ramp with a turn by the probe's success, and
    cancelled before it woke; then the clock 1 s on. Its breaker."""
    breaker = await _open(sw, up)
    breaker.rate = 100.0
    clock.advance(breaker.retry_after())
    probe = breaker.admit()  # the probe, in flight
    assert probe is not None
    held = hold()
    await _until(lambda: breaker.held == 1)
    breaker.record(probe, failure=False)  # released into the ramp with a turn...
    held.cancel()  # ...and cancelled before it woke
    with pytest.raises(asyncio.CancelledError):
        await held
    clock.advance(1.0)
    return breaker


async def _held_behind_probe() -> tuple[Upstream, Breaker, asyncio.Task[str], asyncio.Task[str]]:
    """A key's probe in flight at the gate, and a call ``"held"`` held behind it."""
    sw, up, breaker, probe = await _probe_in_flight()
    held = asyncio.create_task(sw.call(up, "held", key="up"))
    await _until(lambda: breaker.held == 1)
    return up, breaker, probe, held


async def test_a_call_held_during_a_probe_goes_when_it_succeeds() -> None:
    up, _, probe, held = await _held_behind_probe()
    assert up.calls == ["trip", "probe"]  # held: no upstream call while the probe flies
    up.gate.set()
    assert await probe == "probe"
    assert await held == "held"
    assert up.calls == ["trip", "probe", "held"]


async def test_a_call_held_during_a_probe_fails_when_it_fails() -> None:
    up, breaker, probe, held = await _held_behind_probe()
    up.fail = True
    up.gate.set()
    with pytest.raises(ConnectionRefusedError):
        await probe
    with pytest.raises(seawall.CircuitOpenError):
        await held
    assert up.calls == ["trip", "probe"]
    assert breaker.held == 0


async def test_a_cancelled_held_call_leaves_no_trace() -> None:
    up, breaker, probe, held = await _held_behind_probe()
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    assert breaker.held == 0
    up.gate.set()
    assert await probe == "probe"
    assert breaker.state is BreakerState.CLOSED
    assert up.calls == ["trip", "probe"]


async def test_hold_zero_fails_at_once_while_a_probe_flies() -> None:
    sw, up, breaker, probe = await _probe_in_flight(hold=0.0)
    with pytest.raises(seawall.CircuitOpenError):
        await sw.call(up, "rejected", key="up")
    assert breaker.held == 0
    up.gate.set()
    assert await probe == "probe"


@pytest.mark.parametrize(("deadline", "held"), [(10.0, True), (1.0, False)])
async def test_a_call_is_held_only_if_the_probe_comes_before_its_deadline(
    deadline: float, held: bool
) -> None:
    """The probe is due in about 1.6-2 s: a call with 10 s left waits, one with 1 s fails."""
    clock, up = Clock(), Upstream()
    sw = _seawall(clock, deadline=deadline)
    breaker = await _open(sw, up)
    assert 1.0 < breaker.retry_after() < 5.0
    call = asyncio.create_task(sw.call(up, "call", key="up"))
    if held:
        await _until(lambda: breaker.held == 1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    else:
        with pytest.raises(seawall.CircuitOpenError):
            await call
    assert breaker.held == 0
    assert up.calls == ["trip"]


async def test_held_calls_go_first_come_first_served() -> None:
    sw, up, breaker, probe = await _probe_in_flight()
    held = []
    for number in range(3):
        held.append(asyncio.create_task(sw.call(up, f"held-{number}", key="up")))
        await _until(lambda n=number: breaker.held == n + 1)  # type: ignore[misc]
    up.gate.set()
    assert await probe == "probe"
    assert await asyncio.gather(*held) == ["held-0", "held-1", "held-2"]
    assert up.calls == ["trip", "probe", "held-0", "held-1", "held-2"]


async def test_a_call_whose_hold_runs_out_fails_though_the_clock_stands_still() -> None:
    """The hold is bounded on the loop's clock too: a stuck probe cannot keep calls waiting."""
    sw, up, breaker, probe = await _probe_in_flight(hold=0.01)
    with pytest.raises(seawall.CircuitOpenError):
        await sw.call(up, "held", key="up")
    assert breaker.held == 0
    assert up.calls == ["trip", "probe"]
    up.gate.set()
    assert await probe == "probe"


async def test_a_held_call_whose_paced_turn_comes_past_its_deadline_says_so() -> None:
    """Two calls held behind the probe at a slow key, released by its success: the first
    goes at once; the second's turn, a gap on, comes after its deadline. It gives the turn
    back and fails with ``DeadlineExceededError`` saying so, where it failed with
    ``CircuitOpenError``, whose text said the breaker was open: it had closed. A guarded
    block in the same place gets the same error (the block does not run)."""
    clock, up = Clock(), Upstream()
    sw = _seawall(clock)
    breaker = await _open(sw, up)
    breaker.rate = 2.0  # the ramp's gap: 1 / 2.2 s
    gap = 1.0 / ((1.0 + DRAIN_SHARE) * breaker.rate)
    probe = await _probing(sw, up, clock)
    short = sw.policy_for_key("up")
    short = attrs.evolve(short, timeout=attrs.evolve(short.timeout, deadline=gap / 2))
    first = asyncio.create_task(sw.call(up, "first", key="up"))
    await _until(lambda: breaker.held == 1)
    second = asyncio.create_task(sw.using(key="up", policy=short).call(up, "second"))
    await _until(lambda: breaker.held == 2)
    ran = []

    async def block() -> None:
        async with sw.breaker("up", policy=short):
            ran.append("block")

    third = asyncio.create_task(block())
    await _until(lambda: breaker.held == 3)
    up.gate.set()
    assert await probe == "probe"
    assert await first == "first"
    for late, what in ((second, "call"), (third, "block")):
        with pytest.raises(seawall.DeadlineExceededError) as caught:
            await late
        assert f"the breaker recovered while the {what} was held" in str(caught.value)
        assert "paced turn came after its deadline" in str(caught.value)
    assert ran == []
    assert up.calls == ["trip", "probe", "first"]
    assert breaker.state is BreakerState.CLOSED
    books = sw.health()["keys"]["up"]
    assert books["rejections"].get("deadline") == 2, books["rejections"]
