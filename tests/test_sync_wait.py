"""The sync forms wait as async calls do (fix/syncwait): a thread that meets an open or
half-open breaker is held for a near probe verdict (``BreakerPolicy.hold``), and threads
that arrive during the ramp after a recovery take paced turns. Real threads, started
with events; the ``Seawall``'s injected clock (``tests._helpers.Clock``)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
import pytest

import seawall
from seawall.breaker import DRAIN_SHARE, Breaker
from tests._helpers import Clock

KEY = "k"


def _sw(
    clock: Clock,
    *,
    hold: float = 5.0,
    hold_max_calls: int = 100,
    attempt: float | None = 30.0,
    sleep: Any = None,
) -> seawall.Seawall:
    """One attempt a call (limited to ``attempt`` s); the breaker opens on one failed call,
    probes after 8-10 s and holds calls up to ``hold`` seconds for a probe's verdict."""
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(
            failure_threshold=1, recovery_timeout=10.0, hold=hold, hold_max_calls=hold_max_calls
        ),
        timeout=seawall.TimeoutPolicy(attempt=attempt, deadline=None),
    )
    return seawall.Seawall(policy, entrypoints=False, clock=clock, sleep=sleep or clock.sleep)


def _down() -> str:
    raise ConnectionError("refused")


def _up() -> str:
    return "up"


async def _async_up() -> str:
    return "up"


def _breaker(sw: seawall.Seawall) -> Breaker:
    return sw.registry.call_route(KEY, None).state.breaker  # type: ignore[union-attr]


def _open(sw: seawall.Seawall) -> Breaker:
    with pytest.raises(ConnectionError):
        sw.call_sync(_down, key=KEY)
    breaker = _breaker(sw)
    assert breaker.state is seawall.BreakerState.OPEN
    return breaker


def _in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[object]]:
    """``target`` in a thread of its own; what it returned or raised, once it has ended."""
    ended: list[object] = []

    def run() -> None:
        try:
            ended.append(target())
        except BaseException as exc:
            ended.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, ended


def _until(condition: Callable[[], bool]) -> None:
    """Wait (10 s at most) for another thread to bring ``condition`` about."""
    end = time.monotonic() + 10.0
    while not condition():
        assert time.monotonic() < end, "timed out"
        threading.Event().wait(0.001)


class Probe:
    """A probe (or any call) that waits, once started, until the test answers it
    (``answer``): then it returns ``result``, or raises ``ConnectionError`` if told to fail."""

    def __init__(self, result: str = "probe") -> None:
        self.result = result
        self.started = threading.Event()
        self._go = threading.Event()
        self._fail = False

    def __call__(self) -> str:
        self.started.set()
        assert self._go.wait(30)
        if self._fail:
            raise ConnectionError("still down")
        return self.result

    def answer(self, *, fail: bool = False) -> None:
        self._fail = fail
        self._go.set()


def _probing(sw: seawall.Seawall, clock: Clock) -> tuple[Probe, threading.Thread, list[object]]:
    """Open the key, move past the probe's due time, and start a thread's probe."""
    _open(sw)
    clock.advance(11.0)  # past the recovery timeout (jittered down, never up)
    probe = Probe()
    thread, ended = _in_thread(lambda: sw.call_sync(probe, key=KEY))
    assert probe.started.wait(30)
    assert _breaker(sw).state is seawall.BreakerState.HALF_OPEN
    return probe, thread, ended


# --- 1. held for the probe's verdict ---------------------------------------------------


def test_a_thread_is_held_for_the_probes_verdict_and_goes_when_it_succeeds() -> None:
    """A thread met a half-open breaker whose probe was out: it got CircuitOpenError at
    once, where an async call waits for the verdict (hold=5 s). It waits now, blocked on
    the verdict, and goes when the probe succeeds."""
    clock = Clock()
    sw = _sw(clock)
    probe, probe_thread, probed = _probing(sw, clock)
    breaker = _breaker(sw)
    held_thread, held = _in_thread(lambda: sw.call_sync(_up, key=KEY))
    _until(lambda: breaker.held == 1)
    assert held == []  # blocked, not refused
    probe.answer()
    probe_thread.join(30)
    held_thread.join(30)
    assert probed == ["probe"]
    assert held == ["up"]
    books = sw.health()["keys"][KEY]
    assert books["state"] == "closed"
    assert books["held_total"] == 1
    assert books["held"] == 0


def test_a_held_thread_fails_when_the_probe_fails() -> None:
    clock = Clock()
    sw = _sw(clock)
    probe, probe_thread, probed = _probing(sw, clock)
    breaker = _breaker(sw)
    held_thread, held = _in_thread(lambda: sw.call_sync(_up, key=KEY))
    _until(lambda: breaker.held == 1)
    probe.answer(fail=True)
    probe_thread.join(30)
    held_thread.join(30)
    assert isinstance(probed[0], ConnectionError)
    assert len(held) == 1
    assert isinstance(held[0], seawall.CircuitOpenError)
    assert breaker.held == 0
    assert sw.health()["keys"][KEY]["state"] == "open"


def test_a_held_thread_fails_when_its_hold_runs_out_on_the_injected_clock() -> None:
    """The hold is measured on the ``Seawall``'s clock: moved past it, the thread fails."""
    clock = Clock()
    sw = _sw(clock)
    probe, probe_thread, _ = _probing(sw, clock)
    breaker = _breaker(sw)
    held_thread, held = _in_thread(lambda: sw.call_sync(_up, key=KEY))
    try:
        _until(lambda: breaker.held == 1)
        clock.advance(5.5)  # past the 5 s hold (the probe's turn is lent for 30 s)
        held_thread.join(30)
        assert len(held) == 1
        assert isinstance(held[0], seawall.CircuitOpenError)
        assert breaker.held == 0
    finally:
        probe.answer()
        probe_thread.join(30)


def test_a_thread_held_while_open_sends_the_probe_when_it_is_due() -> None:
    """Open with the probe due within the hold: the thread waits, then is the probe."""
    clock = Clock()
    sw = _sw(clock, hold=15.0)
    breaker = _open(sw)
    ran = threading.Event()

    def up() -> str:
        ran.set()
        return "up"

    thread, ended = _in_thread(lambda: sw.call_sync(up, key=KEY))
    _until(lambda: breaker.held == 1)
    assert not ran.is_set()
    clock.advance(breaker.retry_after())  # the probe is due: the held thread sends it
    thread.join(30)
    assert ended == ["up"]
    assert sw.health()["keys"][KEY]["state"] == "closed"


def test_a_thread_is_held_no_longer_than_its_deadline() -> None:
    clock = Clock()
    sw = _sw(clock)
    probe, probe_thread, _ = _probing(sw, clock)
    breaker = _breaker(sw)
    policy = sw.policy_for_key(KEY)
    timeout = seawall.TimeoutPolicy(attempt=30.0, deadline=2.0)
    bounded = sw.using(key=KEY, policy=attrs.evolve(policy, timeout=timeout))
    held_thread, held = _in_thread(lambda: bounded.call_sync(_up))
    try:
        _until(lambda: breaker.held == 1)
        clock.advance(2.5)  # past its deadline, within the 5 s hold
        held_thread.join(30)
        assert len(held) == 1
        assert isinstance(held[0], seawall.CircuitOpenError)
    finally:
        probe.answer()
        probe_thread.join(30)


def test_a_held_threads_hold_ends_on_the_real_clock_though_the_injected_one_stands_still() -> None:
    clock = Clock()
    sw = _sw(clock, hold=0.2)
    probe, probe_thread, _ = _probing(sw, clock)
    try:
        started = time.monotonic()
        with pytest.raises(seawall.CircuitOpenError):
            sw.call_sync(_up, key=KEY)
        assert 0.15 < time.monotonic() - started < 5.0  # held its 0.2 s, then refused
        assert clock.now == pytest.approx(1011.0)  # the injected clock did not move
    finally:
        probe.answer()
        probe_thread.join(30)


def test_a_held_thread_takes_the_probe_over_when_the_probe_gives_its_turn_back() -> None:
    """A probe interrupted without a verdict gives its turn back: a held thread sends it."""
    clock = Clock()
    sw = _sw(clock)
    _open(sw)
    clock.advance(11.0)
    started, go = threading.Event(), threading.Event()

    def interrupted() -> str:
        started.set()
        assert go.wait(30)
        raise KeyboardInterrupt

    probe_thread, probed = _in_thread(lambda: sw.call_sync(interrupted, key=KEY))
    assert started.wait(30)
    breaker = _breaker(sw)
    held_thread, held = _in_thread(lambda: sw.call_sync(_up, key=KEY))
    _until(lambda: breaker.held == 1)
    go.set()
    probe_thread.join(30)
    held_thread.join(30)
    assert len(probed) == 1
    assert isinstance(probed[0], KeyboardInterrupt)
    assert held == ["up"]  # it was the probe, and closed the breaker
    assert sw.health()["keys"][KEY]["state"] == "closed"


def test_held_threads_count_against_hold_max_calls() -> None:
    clock = Clock()
    sw = _sw(clock, hold_max_calls=1)
    probe, probe_thread, _ = _probing(sw, clock)
    breaker = _breaker(sw)
    held_thread, held = _in_thread(lambda: sw.call_sync(_up, key=KEY))
    try:
        _until(lambda: breaker.held == 1)
        with pytest.raises(seawall.CircuitOpenError):  # the cap is taken: refused at once
            sw.call_sync(_up, key=KEY)
        with pytest.raises(seawall.CircuitOpenError):  # an async call too
            asyncio.run(sw.call(_async_up, key=KEY))
    finally:
        probe.answer()
        probe_thread.join(30)
        held_thread.join(30)
    assert held == ["up"]


def test_threads_and_async_calls_held_together_go_on_one_verdict() -> None:
    """Other callers: an async call held on its loop beside a held thread; the thread's
    probe's verdict releases both, each in its turn of one ramp."""
    clock = Clock()
    sw = _sw(clock)
    probe, probe_thread, _ = _probing(sw, clock)
    breaker = _breaker(sw)
    sync_thread, sync_held = _in_thread(lambda: sw.call_sync(_up, key=KEY))
    _until(lambda: breaker.held == 1)
    async_thread, async_held = _in_thread(lambda: asyncio.run(sw.call(_async_up, key=KEY)))
    _until(lambda: breaker.held == 2)
    probe.answer()
    for thread in (probe_thread, sync_thread, async_thread):
        thread.join(30)
    assert sync_held == ["up"]
    assert async_held == ["up"]
    assert sw.health()["keys"][KEY]["held_total"] == 2


def test_a_sync_form_on_an_event_loops_thread_is_not_held() -> None:
    """Held on the loop's own thread, it would stop every task on it (the probe's, maybe)
    for the hold: refused at once, as before."""
    clock = Clock()
    sw = _sw(clock)
    probe, probe_thread, _ = _probing(sw, clock)

    async def from_async_code() -> None:
        with pytest.raises(seawall.CircuitOpenError):
            sw.call_sync(_up, key=KEY)

    try:
        asyncio.run(from_async_code())
        assert _breaker(sw).held == 0
    finally:
        probe.answer()
        probe_thread.join(30)


# --- 2. the ramp after a recovery -----------------------------------------------------


def _recovered(sw: seawall.Seawall, clock: Clock) -> tuple[Breaker, float]:
    """A key that just recovered with one held thread released, at 100 calls/s: its
    breaker (``ramp_until`` set: new calls queue) and the ramp's gap."""
    probe, probe_thread, _ = _probing(sw, clock)
    breaker = _breaker(sw)
    breaker.rate = 100.0
    held_thread, held = _in_thread(lambda: sw.call_sync(_up, key=KEY))
    _until(lambda: breaker.held == 1)
    probe.answer()
    probe_thread.join(30)
    held_thread.join(30)
    assert held == ["up"]
    gap = 1.0 / ((1.0 + DRAIN_SHARE) * breaker.rate)  # the rate as measured at the close
    assert breaker.ramp_until == pytest.approx(clock.now + gap)  # the held thread's queue
    return breaker, gap


@pytest.fixture
def slept() -> None:
    """Waits slept by the ``Seawall``'s ``sleep`` (test mode makes them instant)."""
    seawall.testing.set_testing(False)


@pytest.mark.usefixtures("slept")
def test_a_thread_arriving_during_the_ramp_takes_its_paced_turn() -> None:
    """Threads after a recovery went at once (a herd against an upstream that just came
    back), where async calls queue in the ramp: a thread takes the next turn now."""
    clock = Clock()
    sw = _sw(clock)
    breaker, gap = _recovered(sw, clock)
    start = clock.now
    slept = len(clock.slept)
    assert sw.call_sync(_up, key=KEY) == "up"
    assert clock.slept[slept:] == pytest.approx([gap])  # its ticket: one gap on
    assert clock.now == pytest.approx(start + gap)
    assert breaker.ramp_until == pytest.approx(start + 2 * gap)  # it took the next turn


@pytest.mark.usefixtures("slept")
def test_threads_arriving_together_during_the_ramp_are_spaced() -> None:
    """Threads started together take consecutive turns: their waits are a gap apart."""
    clock = Clock()
    sleeps: dict[int, list[float]] = {}

    def sleep(seconds: float) -> None:  # records, and leaves the clock alone
        sleeps.setdefault(threading.get_ident(), []).append(seconds)

    sw = _sw(clock, sleep=sleep)
    breaker, gap = _recovered(sw, clock)
    sleeps.clear()
    barrier = threading.Barrier(4)

    def go() -> str:
        barrier.wait(30)
        return sw.call_sync(_up, key=KEY)

    runs = [_in_thread(go) for _ in range(4)]
    for thread, _ in runs:
        thread.join(30)
    assert [ended for _, ended in runs] == [["up"]] * 4
    tickets = sorted(waits[0] for waits in sleeps.values())
    assert tickets == pytest.approx([gap, 2 * gap, 3 * gap, 4 * gap])
    assert breaker.ramp_until == pytest.approx(clock.now + 5 * gap)


@pytest.mark.usefixtures("slept")
def test_held_threads_released_by_the_probes_success_leave_a_gap_apart() -> None:
    """Three threads held while the probe is out, released when it succeeds: each takes
    its turn in the ramp (waits a gap apart, as held async calls do), not all at once
    against an upstream that just came back."""
    clock = Clock()
    sleeps: dict[int, list[float]] = {}

    def sleep(seconds: float) -> None:  # records, and leaves the clock alone
        sleeps.setdefault(threading.get_ident(), []).append(seconds)

    sw = _sw(clock, sleep=sleep)
    probe, probe_thread, _ = _probing(sw, clock)
    breaker = _breaker(sw)
    breaker.rate = 100.0
    runs = [_in_thread(lambda: sw.call_sync(_up, key=KEY)) for _ in range(3)]
    _until(lambda: breaker.held == 3)
    sleeps.clear()
    probe.answer()
    probe_thread.join(30)
    for thread, _ in runs:
        thread.join(30)
    assert [ended for _, ended in runs] == [["up"]] * 3
    gap = 1.0 / ((1.0 + DRAIN_SHARE) * breaker.rate)
    # Two of the three waited for their turns, one and two gaps on (the first went at
    # once). Which thread waits which, and the departures' own spacing on a clock that
    # stands still here, depend on how the threads are scheduled: not asserted.
    waits = [w for ws in sleeps.values() for w in ws]
    assert len(sleeps) >= 2
    assert all(w == pytest.approx(gap) or w == pytest.approx(2 * gap) for w in waits), waits
    assert max(waits) == pytest.approx(2 * gap)
    assert breaker.ramp_until == pytest.approx(clock.now + 3 * gap)  # new calls queue after


@pytest.mark.usefixtures("slept")
def test_a_held_threads_deadline_decides_whether_it_takes_its_ramp_turn() -> None:
    """Threads held with deadlines (two calls, then a block), released by the probe's
    success: the one whose paced turn comes before its deadline goes; those whose turns
    would come after theirs give them back and fail with ``DeadlineExceededError``."""
    clock = Clock()
    sleeps: list[float] = []
    sw = _sw(clock, sleep=sleeps.append)
    probe, probe_thread, _ = _probing(sw, clock)
    breaker = _breaker(sw)
    breaker.rate = 2.0  # a slow key: the ramp's gap is 1 / 2.2 s
    gap = 1.0 / ((1.0 + DRAIN_SHARE) * breaker.rate)
    policy = sw.policy_for_key(KEY)

    def bounded(deadline: float) -> Any:
        timeout = seawall.TimeoutPolicy(attempt=30.0, deadline=deadline)
        return sw.using(key=KEY, policy=attrs.evolve(policy, timeout=timeout))

    first, first_ended = _in_thread(lambda: bounded(100.0).call_sync(_up))
    _until(lambda: breaker.held == 1)
    second, second_ended = _in_thread(lambda: bounded(gap / 2).call_sync(_up))
    _until(lambda: breaker.held == 2)
    short = sw.policy_for_key(KEY)
    short = attrs.evolve(short, timeout=seawall.TimeoutPolicy(attempt=30.0, deadline=gap / 2))
    ran: list[str] = []

    def block() -> None:
        with sw.breaker(KEY, policy=short):
            ran.append("block")

    third, third_ended = _in_thread(block)
    _until(lambda: breaker.held == 3)
    probe.answer()
    probe_thread.join(30)
    first.join(30)
    second.join(30)
    third.join(30)
    assert ran == []  # a gap and more on: past the block's deadline too
    assert isinstance(third_ended[0], seawall.DeadlineExceededError)
    assert "the breaker recovered while the block was held" in str(third_ended[0])
    assert first_ended == ["up"]  # its turn (now) is well before its deadline
    assert len(second_ended) == 1
    # Its turn, a gap on, is past its deadline: a deadline error that says so. (It was
    # CircuitOpenError, whose text said the breaker was open: it had closed.)
    error = second_ended[0]
    assert isinstance(error, seawall.DeadlineExceededError)
    assert "the breaker recovered while the call was held" in str(error)
    assert "paced turn came after its deadline; nothing was sent" in str(error)
    assert sw.health()["keys"][KEY]["state"] == "closed"
    assert sleeps == []  # none slept: one went at once, the others did not wait in vain
