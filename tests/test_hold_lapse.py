"""A lapsed probe wakes its held callers (fix/lapsewake): a half-open breaker's probe that
nothing can cut short (a thread's, a guarded block's, a block form's) is lent its turn until
its attempt limit (``Breaker.lend``); calls held for its verdict now wake when that limit
passes and take the freed turn as a new arrival would, where they used to sit out their
hold and fail. Clocks the tests move (``test_hold_rules.Clocks``), a virtual-time loop, and
real threads on an injected clock; no test sleeps to wait for state."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

import seawall
from seawall._path.hold import held
from seawall.breaker import RAMP, Breaker, BreakerState
from tests._helpers import Clock

from .test_hold_rules import Clocks, _half_open, clocks, run, turns
from .test_sync_wait import Probe, _breaker, _in_thread, _open, _until

__all__ = ["clocks"]  # the fixture, used here


# --- 1. the held call's side (``held``), on clocks the test moves --------------------


def test_a_held_call_takes_the_turn_of_a_lent_probe_when_its_limit_passes(clocks: Clocks) -> None:
    """Half-open, the probe lent until 3 s from now, a call held up to 5 s: it used to wait
    out its hold and fail though the turn was free after 3 s. It is the next probe then,
    not before; the old probe's late verdict is stale news."""
    breaker, probe = _half_open(clocks)  # hold 5 s
    breaker.lend(probe, clocks.now + 3.0)

    async def scenario() -> None:
        call = asyncio.ensure_future(held(breaker, clocks.breaker_clock, None))
        assert await turns(lambda: breaker.held == 1)
        clocks.advance(2.9)
        assert not await turns(call.done, 200)  # the lent probe's turn is still its own
        clocks.advance(0.2)
        assert await turns(call.done)
        permit = call.result()
        assert permit is not None
        assert permit.probe
        assert probe.lapsed
        assert breaker.state is BreakerState.HALF_OPEN
        assert breaker.held == 0
        breaker.record(permit, failure=False)
        assert breaker.state is BreakerState.CLOSED
        breaker.record(probe, failure=True)  # the hung probe's late failure changes nothing
        assert breaker.state is BreakerState.CLOSED

    run(clocks, scenario)


@pytest.mark.parametrize("fails", [False, True], ids=["succeeds", "fails"])
def test_one_woken_call_is_the_new_probe_the_others_wait_for_its_verdict(
    clocks: Clocks, fails: bool
) -> None:
    """``half_open_max_calls=1``, three calls held when the lent probe's limit passes:
    exactly one is the new probe; the other two are held for its verdict, and go when it
    succeeds (paced by the ramp), or fail when it fails."""
    breaker, probe = _half_open(clocks)
    breaker.lend(probe, clocks.now + 3.0)

    async def scenario() -> None:
        calls = [asyncio.ensure_future(held(breaker, clocks.breaker_clock, None)) for _ in "abc"]
        assert await turns(lambda: breaker.held == 3)
        clocks.advance(3.1)
        assert await turns(lambda: any(call.done() for call in calls))
        assert await turns(lambda: breaker.held == 2, 200)
        done = [call for call in calls if call.done()]
        assert len(done) == 1
        new_probe = done[0].result()
        assert new_probe is not None
        assert new_probe.probe
        breaker.record(new_probe, failure=fails)
        assert await turns(lambda: sum(call.done() for call in calls) >= 2)  # one goes now
        clocks.advance(RAMP)  # the other's paced turn in the ramp
        assert await turns(lambda: all(call.done() for call in calls))
        others = [call.result() for call in calls if call is not done[0]]
        if fails:
            assert others == [None, None]
            assert breaker.state is BreakerState.OPEN
        else:
            assert all(permit is not None and not permit.probe for permit in others)
            assert breaker.state is BreakerState.CLOSED

    run(clocks, scenario)


def test_a_call_whose_hold_ends_before_the_lend_is_due_is_refused(clocks: Clocks) -> None:
    """The lent probe's limit comes after the hold's end: the call is refused when its hold
    ends, as before (this passes on the code before fix/lapsewake too)."""
    breaker, probe = _half_open(clocks, hold=2.0)
    breaker.lend(probe, clocks.now + 3.0)

    async def scenario() -> None:
        call = asyncio.ensure_future(held(breaker, clocks.breaker_clock, None))
        assert await turns(lambda: breaker.held == 1)
        clocks.advance(1.9)
        assert not await turns(call.done, 200)
        clocks.advance(0.1)
        assert await turns(call.done)
        assert call.result() is None
        assert not probe.lapsed  # its turn is still its own
        assert breaker.admit() is None

    run(clocks, scenario)


def test_a_call_held_before_the_probe_was_lent_wakes_at_its_limit(clocks: Clocks) -> None:
    """The probe is lent after the call was held (a thread that was itself held takes the
    probe, then lends it): the held call is woken to learn the limit, and takes the turn
    when it passes."""
    breaker, probe = _half_open(clocks)

    async def scenario() -> None:
        call = asyncio.ensure_future(held(breaker, clocks.breaker_clock, None))
        assert await turns(lambda: breaker.held == 1)
        breaker.lend(probe, clocks.now + 3.0)
        assert not await turns(call.done, 200)  # woken, it asked again and waits again
        assert breaker.held == 1
        clocks.advance(3.1)
        assert await turns(call.done)
        permit = call.result()
        assert permit is not None
        assert permit.probe

    run(clocks, scenario)


def test_a_call_cancelled_as_it_wakes_leaves_the_turn_to_the_next(clocks: Clocks) -> None:
    """Two calls held; the first is cancelled just as the lent probe's limit passes: it
    takes no turn, and the other is the new probe."""
    breaker, probe = _half_open(clocks)
    breaker.lend(probe, clocks.now + 3.0)

    async def scenario() -> None:
        first = asyncio.ensure_future(held(breaker, clocks.breaker_clock, None))
        second = asyncio.ensure_future(held(breaker, clocks.breaker_clock, None))
        assert await turns(lambda: breaker.held == 2)
        clocks.advance(3.1)
        first.cancel()
        assert await turns(lambda: first.done() and second.done())
        assert first.cancelled()
        permit = second.result()
        assert permit is not None
        assert permit.probe
        assert breaker.held == 0
        assert breaker.admit() is None  # one probe out: the second's, not two

    run(clocks, scenario)


# --- 2. held async calls behind a hung guarded probe, on virtual time -----------------


def _sw(*, hold: float = 8.0) -> seawall.Seawall:
    """One attempt a call, limited to 5 s; the breaker opens on one failed call, probes
    after 8-10 s and holds calls up to ``hold`` s; the clock is the virtual loop's."""
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(failure_threshold=1, recovery_timeout=10.0, hold=hold),
        timeout=seawall.TimeoutPolicy(attempt=5.0, deadline=None),
    )
    clock = asyncio.get_running_loop().time
    return seawall.Seawall(policy, entrypoints=False, clock=clock)


class Gate:
    """The callers' function: records who started, then waits for ``go`` (and fails if told)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.first = asyncio.Event()
        self.go = asyncio.Event()
        self.fail = False

    def __call__(self, name: str) -> Callable[[], Any]:
        async def call() -> str:
            self.started.append(name)
            self.first.set()
            await self.go.wait()
            if self.fail:
                raise ConnectionError("still down")
            return name

        return call


async def _hung_guarded_probe(sw: seawall.Seawall) -> tuple[asyncio.Task[None], Breaker]:
    """Open key ``k``, let its probe come due, and start a guarded block that takes the
    probe and hangs (lent until 5 s on)."""
    with pytest.raises(ConnectionError):
        async with sw.breaker("k"):
            raise ConnectionError("refused")
    await asyncio.sleep(11.0)  # virtual: past the recovery timeout
    entered = asyncio.Event()

    async def block() -> None:
        async with sw.breaker("k"):
            entered.set()
            await asyncio.Event().wait()  # a read without a timeout

    hung = asyncio.create_task(block())
    await entered.wait()
    breaker = sw.registry.view["k"].breaker
    assert breaker.state is BreakerState.HALF_OPEN
    return hung, breaker


async def _one_in(gate: Gate, calls: Any) -> None:
    """Wait until a call runs its function (idle: virtual time runs on to the next timer);
    fail at once if a call ended instead (refused)."""
    first = asyncio.ensure_future(gate.first.wait())
    await asyncio.wait({first, *calls}, return_when=asyncio.FIRST_COMPLETED)
    first.cancel()
    assert gate.first.is_set(), await _settled(*calls)


async def _settled(*tasks: asyncio.Task[Any]) -> list[object]:
    """What each task returned or raised."""
    return list(await asyncio.gather(*tasks, return_exceptions=True))


@pytest.mark.virtual_time
@pytest.mark.parametrize("fails", [False, True], ids=["succeeds", "fails"])
async def test_calls_held_behind_a_hung_guarded_probe_take_its_turn_when_it_lapses(
    fails: bool,
) -> None:
    """A guarded block hung as the probe; three ``sw.call``s held for its verdict (hold 8 s)
    were all refused 8 s later, though its turn was free after 5 s. Now one is the new
    probe at 5 s, and the others go with its success or fail with its failure."""
    sw = _sw()
    hung, breaker = await _hung_guarded_probe(sw)
    gate = Gate()
    calls = [asyncio.ensure_future(sw.call(gate(name), key="k")) for name in "abc"]
    try:
        await _one_in(gate, calls)  # at the lent probe's limit
        assert await turns(lambda: breaker.held == 2)
        assert len(gate.started) == 1
        gate.fail = fails
        gate.go.set()
        ended = await _settled(*calls)
    finally:
        hung.cancel()
        await _settled(hung)
    if fails:
        assert [type(result) for result in ended].count(seawall.CircuitOpenError) == 2
        assert breaker.state is BreakerState.OPEN
    else:
        assert ended == ["a", "b", "c"]
        assert breaker.state is BreakerState.CLOSED
    assert sw.registry.view["k"].cooldown.inflight == 0


@pytest.mark.virtual_time
async def test_a_woken_call_cancelled_in_its_attempt_gives_the_turn_to_the_next() -> None:
    """The call woken to be the new probe is cancelled while it runs: its turn goes back,
    and the other held call takes it and closes the breaker."""
    sw = _sw()
    hung, breaker = await _hung_guarded_probe(sw)
    gate = Gate()
    calls = {name: asyncio.ensure_future(sw.call(gate(name), key="k")) for name in "ab"}
    try:
        await _one_in(gate, calls.values())
        (first,) = gate.started
        calls[first].cancel()
        assert await turns(lambda: len(gate.started) == 2)
        gate.go.set()
        ended = await _settled(*calls.values())
    finally:
        hung.cancel()
        await _settled(hung)
    (other,) = set(calls) - {first}
    assert isinstance(ended[list(calls).index(first)], asyncio.CancelledError)
    assert ended[list(calls).index(other)] == other
    assert breaker.state is BreakerState.CLOSED
    assert sw.registry.view["k"].cooldown.inflight == 0


# --- 3. held threads behind a hung thread's probe, on the injected clock ---------------


def _sw_threads(clock: Clock) -> seawall.Seawall:
    """One attempt a call, limited to 3 s (a thread's probe is lent for that long); the
    breaker opens on one failed call, probes after 8-10 s, holds calls up to 5 s."""
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(failure_threshold=1, recovery_timeout=10.0, hold=5.0),
        timeout=seawall.TimeoutPolicy(attempt=3.0, deadline=None),
    )
    return seawall.Seawall(policy, entrypoints=False, clock=clock, sleep=clock.sleep)


def _hung_thread_probe(sw: seawall.Seawall, clock: Clock) -> tuple[Probe, threading.Thread]:
    """Open key ``k``, let its probe come due, and start a thread's probe that hangs."""
    _open(sw)
    clock.advance(11.0)
    probe = Probe()
    thread, _ = _in_thread(lambda: sw.call_sync(probe, key="k"))
    assert probe.started.wait(30)
    return probe, thread


def _block_form(sw: seawall.Seawall, fn: Callable[[], str]) -> str:
    for attempt in sw.attempts(key="k"):
        with attempt:
            return fn()
    return "unreachable"


@pytest.mark.parametrize("form", ["call_sync", "block"])
def test_a_held_thread_takes_the_turn_of_a_hung_probe_when_its_limit_passes(form: str) -> None:
    """A thread held behind a thread's probe hung past its 3 s limit was refused when its
    5 s hold ended; it is the new probe at 3 s now, and closes the breaker. The sync block
    form (``for attempt in sw.attempts(...)``) is held the same way."""
    clock = Clock()
    sw = _sw_threads(clock)
    probe, probe_thread = _hung_thread_probe(sw, clock)
    breaker = _breaker(sw)
    ran = threading.Event()

    def up() -> str:
        ran.set()
        return "up"

    if form == "call_sync":
        thread, ended = _in_thread(lambda: sw.call_sync(up, key="k"))
    else:
        thread, ended = _in_thread(lambda: _block_form(sw, up))
    try:
        _until(lambda: breaker.held == 1)
        clock.advance(2.9)
        assert not ran.wait(0.1)  # still held: the hung probe's turn is its own
        clock.advance(0.2)
        thread.join(30)
        assert ended == ["up"]
        assert breaker.state is BreakerState.CLOSED
    finally:
        probe.answer(fail=True)  # its late failure is stale news
        probe_thread.join(30)
    assert breaker.state is BreakerState.CLOSED
    assert sw.health()["keys"]["k"]["transitions"] == {
        "closed->open": 1,
        "open->half_open": 1,
        "half_open->closed": 1,
    }


@pytest.mark.parametrize("fails", [False, True], ids=["succeeds", "fails"])
def test_one_woken_thread_is_the_new_probe_the_others_wait_for_its_verdict(fails: bool) -> None:
    """Three threads held (two ``call_sync``, one block form) when the hung probe's limit
    passes: one is the new probe, the other two wait for its verdict and go with its
    success or fail with its failure."""
    clock = Clock()
    sw = _sw_threads(clock)
    probe, probe_thread = _hung_thread_probe(sw, clock)
    breaker = _breaker(sw)
    started: list[str] = []
    go = threading.Event()

    def gate(name: str) -> Callable[[], str]:
        def call() -> str:
            started.append(name)
            assert go.wait(30)
            if fails:
                raise ConnectionError("still down")
            return name

        return call

    threads = [
        _in_thread(lambda: sw.call_sync(gate("a"), key="k")),
        _in_thread(lambda: sw.call_sync(gate("b"), key="k")),
        _in_thread(lambda: _block_form(sw, gate("c"))),
    ]
    try:
        _until(lambda: breaker.held == 3)
        clock.advance(3.1)
        _until(lambda: len(started) == 1 and breaker.held == 2)
        assert len(started) == 1
        go.set()
        for thread, _ in threads:
            thread.join(30)
    finally:
        go.set()
        probe.answer()
        probe_thread.join(30)
    ended = [result for _, results in threads for result in results]
    if fails:
        assert sum(isinstance(result, ConnectionError) for result in ended) == 1
        assert sum(isinstance(result, seawall.CircuitOpenError) for result in ended) == 2
        assert breaker.state is BreakerState.OPEN
    else:
        assert ended == ["a", "b", "c"]
        assert breaker.state is BreakerState.CLOSED
