"""``with sw.breaker(key):`` in a thread (fix/syncguard): the async guard's semantics for
sync code. Success and failure are recorded, an open breaker refuses, a block refused
while a probe's verdict is near is held for it (``hold.held_thread``), released blocks
take their ramp turn, a probe's turn is lent until its attempt limit, an interrupt gives
the permit back. Real threads started with events, the ``Seawall``'s injected clock
(``tests._helpers.Clock``, or ``test_hold_rules.Clocks`` with a loop); no test sleeps
to wait for state. On the code before this branch each fails at the first ``with``:
``TypeError: 'BreakerGuard' object does not support the context manager protocol``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

import seawall
from seawall.breaker import BreakerState
from tests._helpers import Clock

from .test_hold_rules import Clocks, clocks, run, turns
from .test_sync_wait import (
    KEY,
    Probe,
    _breaker,
    _in_thread,
    _open,
    _probing,
    _recovered,
    _sw,
    _until,
    slept,
)

__all__ = ["clocks", "slept"]  # the fixtures, used here


def _guarded(sw: seawall.Seawall, body: Callable[[], object] = lambda: "ran") -> object:
    """``body`` in a block guarded by the key's breaker; what it returned."""
    with sw.breaker(KEY):
        return body()


def _raise(exc: BaseException) -> Callable[[], object]:
    def body() -> object:
        raise exc

    return body


# --- 1. verdicts ------------------------------------------------------------------------


def test_blocks_in_threads_record_successes_and_failures_and_open_the_breaker() -> None:
    """Threads' blocks count as the async guard's do: two failures (threshold 2) open the
    breaker, and the next block is refused at once (hold=0) without running."""
    policy = seawall.Policy(breaker=seawall.BreakerPolicy(failure_threshold=2, hold=0))
    sw = seawall.Seawall(policy, entrypoints=False, clock=Clock())
    ran: list[str] = []

    def block(fail: bool) -> object:
        ran.append("fail" if fail else "ok")
        if fail:
            raise ConnectionError("refused")
        return "ok"

    for fail in (False, True, True):
        thread, ended = _in_thread(lambda fail=fail: _guarded(sw, lambda: block(fail)))
        thread.join(30)
        if fail:
            assert isinstance(ended[0], ConnectionError)
        else:
            assert ended == ["ok"]
    assert _breaker(sw).state is BreakerState.OPEN
    thread, ended = _in_thread(lambda: _guarded(sw, lambda: block(False)))
    thread.join(30)
    assert isinstance(ended[0], seawall.CircuitOpenError)
    assert ran == ["ok", "fail", "fail"]  # the refused block did not run
    detail = sw.health().by_key[KEY]
    assert (detail.requests, detail.attempts, detail.successes) == (4, 3, 1)
    assert detail.failures == {"network": 2}
    assert detail.rejections == {"breaker": 1}
    assert sw.registry.view[KEY].cooldown.inflight == 0


def test_an_open_breaker_refuses_a_block_at_once_with_hold_zero() -> None:
    """``hold=0``: a thread meeting a half-open breaker whose probe is out is refused at
    once, as before holding existed; the block does not run."""
    clock = Clock()
    sw = _sw(clock, hold=0.0)
    probe, probe_thread, _ = _probing(sw, clock)
    try:
        with pytest.raises(seawall.CircuitOpenError):
            _guarded(sw, _raise(AssertionError("the block ran")))
        assert _breaker(sw).held == 0
        assert sw.health().by_key[KEY].held_total == 0
    finally:
        probe.answer()
        probe_thread.join(30)


def test_a_caller_error_in_the_block_does_not_count_as_a_failure() -> None:
    """A ``KeyError`` (the caller's bug) leaves the block as it is and never trips the
    breaker (threshold 1); a ``ConnectionError`` does."""
    clock = Clock()
    sw = _sw(clock)
    thread, ended = _in_thread(lambda: _guarded(sw, _raise(KeyError("the caller's bug"))))
    thread.join(30)
    assert isinstance(ended[0], KeyError)
    detail = sw.health().by_key[KEY]
    assert detail.state == "closed"
    assert detail.last_failure is None
    assert detail.failures == {"caller": 1}
    with pytest.raises(ConnectionError):
        _guarded(sw, _raise(ConnectionError("refused")))
    assert sw.health().by_key[KEY].state == "open"


def test_an_interrupt_gives_the_permit_back_and_a_half_open_probe_frees_its_place() -> None:
    """``KeyboardInterrupt`` leaving a guarded probe: raised as it is, no verdict (still
    half-open), nothing in flight, and the next block is the probe and closes it."""
    clock = Clock()
    sw = _sw(clock, hold=0.0)
    _open(sw)
    clock.advance(11.0)
    thread, ended = _in_thread(lambda: _guarded(sw, _raise(KeyboardInterrupt())))
    thread.join(30)
    assert isinstance(ended[0], KeyboardInterrupt)
    breaker = _breaker(sw)
    assert breaker.state is BreakerState.HALF_OPEN
    assert sw.registry.view[KEY].cooldown.inflight == 0
    assert _guarded(sw) == "ran"  # the one probe place was given back
    detail = sw.health().by_key[KEY]
    assert detail.state == "closed"
    # the opening call, the interrupted block, the probe; the interrupted is no attempt
    assert (detail.requests, detail.attempts) == (3, 2)


# --- 2. held for a near verdict ---------------------------------------------------------


@pytest.mark.parametrize("fails", [False, True], ids=["succeeds", "fails"])
def test_a_block_in_a_thread_is_held_for_the_probes_verdict(fails: bool) -> None:
    """A thread's block meeting a probe in flight (hold 5 s) waits, blocked, for its
    verdict: it runs when the probe succeeds, and gets CircuitOpenError without running
    when it fails."""
    clock = Clock()
    sw = _sw(clock)
    probe, probe_thread, _ = _probing(sw, clock)
    breaker = _breaker(sw)
    ran = threading.Event()
    thread, ended = _in_thread(lambda: _guarded(sw, lambda: ran.set() or "ran"))
    _until(lambda: breaker.held == 1)
    assert ended == []
    assert not ran.is_set()
    probe.answer(fail=fails)
    probe_thread.join(30)
    thread.join(30)
    if fails:
        assert isinstance(ended[0], seawall.CircuitOpenError)
        assert not ran.is_set()
        assert breaker.state is BreakerState.OPEN
    else:
        assert ended == ["ran"]
        assert breaker.state is BreakerState.CLOSED
    detail = sw.health().by_key[KEY]
    assert (detail.held, detail.held_total) == (0, 1)
    assert detail.rejections == ({"breaker": 1} if fails else {})
    assert sw.registry.view[KEY].cooldown.inflight == 0


def test_a_block_beyond_hold_max_calls_is_refused_at_once() -> None:
    """One block held (``hold_max_calls=1``): the next, in another thread, is refused at
    once; the held one runs when the probe succeeds."""
    clock = Clock()
    sw = _sw(clock, hold_max_calls=1)
    probe, probe_thread, _ = _probing(sw, clock)
    breaker = _breaker(sw)
    thread, ended = _in_thread(lambda: _guarded(sw))
    try:
        _until(lambda: breaker.held == 1)
        with pytest.raises(seawall.CircuitOpenError):
            _guarded(sw, _raise(AssertionError("the block ran")))
        assert breaker.held == 1
    finally:
        probe.answer()
        probe_thread.join(30)
        thread.join(30)
    assert ended == ["ran"]


def test_a_block_is_held_no_longer_than_its_deadline() -> None:
    """Under ``seawall.deadline(2)`` (hold 5 s), the held block is refused once the
    injected clock passes the deadline."""
    clock = Clock()
    sw = _sw(clock)
    probe, probe_thread, _ = _probing(sw, clock)
    breaker = _breaker(sw)

    def bounded() -> object:
        with seawall.deadline(2.0):
            return _guarded(sw)

    thread, ended = _in_thread(bounded)
    try:
        _until(lambda: breaker.held == 1)
        clock.advance(2.5)
        thread.join(30)
        assert isinstance(ended[0], seawall.CircuitOpenError)
    finally:
        probe.answer()
        probe_thread.join(30)


@pytest.mark.usefixtures("slept")
def test_a_block_arriving_during_the_ramp_takes_its_paced_turn() -> None:
    """After a recovery, a thread's block queues in the ramp as ``call_sync`` does."""
    clock = Clock()
    sw = _sw(clock)
    breaker, gap = _recovered(sw, clock)
    start, slept = clock.now, len(clock.slept)
    assert _guarded(sw) == "ran"
    assert clock.slept[slept:] == pytest.approx([gap])  # its ticket: one gap on
    assert breaker.ramp_until == pytest.approx(start + 2 * gap)


# --- 3. one guard, many threads and tasks -----------------------------------------------


def test_one_guard_shared_by_a_thread_and_a_task() -> None:
    """A module-level guard: a thread's block in progress and a task's ``async with`` on
    the same object do not clash; each has its own permit. Re-entering it in one thread
    is a RuntimeError naming the thread."""
    sw = _sw(Clock())
    payments = sw.breaker(KEY)
    inside, leave = threading.Event(), threading.Event()

    def in_thread() -> str:
        with payments:
            inside.set()
            assert leave.wait(30)
        return "thread"

    async def in_task() -> str:
        async with payments:
            await asyncio.sleep(0)
        return "task"

    thread, ended = _in_thread(in_thread)
    assert inside.wait(30)
    assert asyncio.run(in_task()) == "task"
    leave.set()
    thread.join(30)
    assert ended == ["thread"]
    assert sw.health().by_key[KEY].successes == 2

    def twice() -> None:
        with payments, payments:
            pass

    with pytest.raises(RuntimeError, match="already guarding a block of this thread"):
        twice()


def test_on_an_event_loops_thread_a_block_is_never_held() -> None:
    """``with`` in a coroutine works, keyed by its task (two tasks' blocks may interleave),
    but is never held: it would stop the loop, maybe the probe it waits for. Refused at
    once while a probe is out (hold 5 s)."""
    clock = Clock()
    sw = _sw(clock)
    guard = sw.breaker(KEY)

    async def block(gate: asyncio.Event) -> str:
        with guard:
            await gate.wait()
        return "ran"

    async def two_tasks() -> list[str]:
        gate = asyncio.Event()
        tasks = [asyncio.create_task(block(gate)) for _ in "ab"]
        await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(*tasks)

    assert asyncio.run(two_tasks()) == ["ran", "ran"]
    probe, probe_thread, _ = _probing(sw, clock)

    async def from_async_code() -> None:
        with pytest.raises(seawall.CircuitOpenError):
            _guarded(sw, _raise(AssertionError("the block ran")))

    try:
        asyncio.run(from_async_code())
        assert _breaker(sw).held == 0
        assert sw.health().by_key[KEY].held_total == 0
    finally:
        probe.answer()
        probe_thread.join(30)


# --- 4. a hung guarded probe in a thread -----------------------------------------------


def test_a_hung_guarded_probe_in_a_thread_lends_its_turn_until_its_attempt_limit(
    clocks: Clocks,
) -> None:
    """A thread's guarded block took the probe and hangs (attempt limit 3 s): an async
    ``sw.call`` held for its verdict (hold 5 s) waits while the turn is the block's, takes
    it as the new probe at the limit and closes the breaker; the hung block's late failure
    is stale news."""
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(failure_threshold=1, recovery_timeout=10.0, hold=5.0),
        timeout=seawall.TimeoutPolicy(attempt=3.0, deadline=None),
    )
    sw = seawall.Seawall(policy, entrypoints=False, clock=clocks.breaker_clock)
    with pytest.raises(ConnectionError):
        _guarded(sw, _raise(ConnectionError("refused")))
    clocks.advance(11.0)
    hung = Probe("late")  # a body that waits, once started, until the test lets it end
    thread, ended = _in_thread(lambda: _guarded(sw, hung))
    assert hung.started.wait(30)
    breaker = sw.registry.view[KEY].breaker
    assert breaker.state is BreakerState.HALF_OPEN

    async def up() -> str:
        return "up"

    async def scenario() -> object:
        call = asyncio.ensure_future(sw.call(up, key=KEY))
        assert await turns(lambda: breaker.held == 1)
        clocks.advance(2.9)
        assert not await turns(call.done, 200)  # the hung block's turn is still its own
        clocks.advance(0.2)
        assert await turns(call.done)
        return call.result()

    try:
        assert run(clocks, scenario) == "up"
        assert breaker.state is BreakerState.CLOSED
    finally:
        hung.answer(fail=True)
        thread.join(30)
    assert isinstance(ended[0], ConnectionError)  # raised to its caller, never swallowed
    assert breaker.state is BreakerState.CLOSED  # its late failure changed nothing
    assert sw.health().by_key[KEY].transitions == {
        "closed->open": 1,
        "open->half_open": 1,
        "half_open->closed": 1,
    }
    assert sw.registry.view[KEY].cooldown.inflight == 0
