"""A key's books change only under its lock, whichever path changes them.

Sync callers (``call_sync`` in threads) settle a key under its lock
(docs/architecture.md, "Plugins are called outside the key's lock"); two
async paths changed the same books without it, racing with those threads:
the ``async with sw.breaker(key)`` guard and a call held for a probe's
verdict (``seawall._path.hold``). And the fleet store woke its task with an
``asyncio.Event`` set from whatever thread moved a breaker, which an event
loop does not allow.

A race shows only by chance; these tests show the discipline instead: a
breaker that notes, in each of its methods that changes it, whether the key's
lock is held; a thread that holds the lock while the guard waits for it; and
an event loop in debug mode, which refuses to be called from another thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import pytest

import seawall
from seawall import Seawall
from seawall._path.hold import held
from seawall.breaker import Breaker, Permit
from seawall.fleet import Fleet, FleetStore
from seawall.fleet import store as fleet_store
from seawall.fleet.parts import FleetBreaker
from seawall.policy import BreakerPolicy, Policy, RetryPolicy
from seawall.state import KeyState
from seawall.stats import KeyStats

from ._redis import RedisServer, free_port, server_fixture
from .test_breaker_hold import _trip
from .test_hold_rules import Clocks, _breaker, clocks, run, turns
from .test_plugin_lock import LockSpy

__all__ = ["clocks"]  # the fixture, used here

GUARD = 30.0  # seconds: a hang guard only, never a target


class NotesTheLock:
    """Mixed into a breaker's class: each change notes whether ``lock`` is held."""

    __slots__ = ()
    lock: ClassVar[Any] = None
    notes: ClassVar[list[tuple[str, bool]]]

    def _note(self, name: str) -> None:
        self.notes.append((name, self.lock._is_owned()))


def spy_on(breaker: Breaker, lock: Any) -> list[tuple[str, bool]]:
    """Make ``breaker`` note, in each method that changes it, whether ``lock`` is held."""
    notes: list[tuple[str, bool]] = []
    base = type(breaker)

    def noting(name: str) -> Callable[..., Any]:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            self._note(name)
            return getattr(super(spied, self), name)(*args, **kwargs)

        return wrapper

    names = (
        "admit",
        "record",
        "release",
        "call_failed",
        "hold",
        "unhold",
        "leave_turn",
        "depart",
        "turn",
        "verdict_in",
    )
    spied = type(
        f"Noting{base.__name__}",
        (NotesTheLock, base),
        {"__slots__": (), "lock": lock, "notes": notes} | {n: noting(n) for n in names},
    )
    breaker.__class__ = spied
    return notes


def unlocked(notes: list[tuple[str, bool]]) -> list[str]:
    return [name for name, owned in notes if not owned]


# --- the guard: ``async with sw.breaker(key)`` ----------------------------------------------


def _guarded(now: list[float]) -> tuple[Seawall, KeyState]:
    policy = Policy(breaker=BreakerPolicy(failure_threshold=2, recovery_timeout=10.0))
    sw = Seawall(policy, entrypoints=False, clock=lambda: now[0])
    return sw, sw.state_for("k", policy)


async def test_the_guard_changes_the_books_under_the_keys_lock_and_calls_no_plugin_under_it() -> (
    None
):
    """Success, two failures that open the breaker, a refusal, the probe that closes it:
    every change of the breaker is made holding the key's lock, every hook without it."""
    now = [1000.0]
    sw, state = _guarded(now)
    notes = spy_on(state.breaker, state.lock)
    spy = LockSpy(state.lock)
    sw.plugin_manager.register(spy)
    guard = sw.breaker("k")

    async with guard:
        pass
    for _ in range(2):
        with pytest.raises(ConnectionResetError):
            async with guard:
                raise ConnectionResetError
    with pytest.raises(seawall.CircuitOpenError):
        async with guard:
            pytest.fail("the block runs while the breaker is open")  # pragma: no cover
    now[0] += 60.0
    async with guard:  # the probe
        pass
    await guard.__aenter__()  # a block cancelled: its permit goes back
    await guard.__aexit__(asyncio.CancelledError, asyncio.CancelledError(), None)

    assert {"admit", "record", "call_failed", "release"} <= {name for name, _ in notes}
    assert unlocked(notes) == [], f"the guard changed the breaker without the lock: {notes}"
    assert {"attempt", "call", "breaker", "rejected"} <= set(spy.kinds)
    under_lock = [hook for hook, owned in spy.calls if owned]
    assert under_lock == [], f"plugins called under the key's lock: {under_lock}"
    assert spy.kinds.count("breaker") == 3  # closed->open->half_open->closed, each told
    health = sw.health()["keys"]["k"]  # type: ignore[index]
    assert health["state"] == "closed"
    assert health["requests"] == 6
    assert not state.lock._is_owned()


def test_the_guard_waits_for_the_keys_lock_held_by_another_thread() -> None:
    """While a thread holds the key's lock (as a sync call settling does), a guarded block
    neither enters nor records its failure: each waits for the lock, then goes on."""
    now = [1000.0]
    sw, state = _guarded(now)
    lock = state.lock
    entered, may_fail, failed = threading.Event(), threading.Event(), threading.Event()

    def holding() -> tuple[threading.Thread, threading.Event]:
        """A thread that takes the key's lock (returned once it has it) until told."""
        taken, give_back = threading.Event(), threading.Event()

        def holder() -> None:
            with lock:
                taken.set()
                give_back.wait(GUARD)

        thread = threading.Thread(target=holder)
        thread.start()
        assert taken.wait(GUARD)
        return thread, give_back

    async def guarded() -> None:
        async with sw.breaker("k"):
            entered.set()
            may_fail.wait(GUARD)
            raise ConnectionResetError

    async def block() -> None:
        with pytest.raises(ConnectionResetError):
            await guarded()
        failed.set()

    holders = [holding()]
    caller = threading.Thread(target=asyncio.run, args=(block(),))
    caller.start()
    try:
        # Held for a while: the block must not enter (before, it entered at once).
        assert not entered.wait(0.5)
        assert state.stats.requests == 0
        holders[-1][1].set()
        assert entered.wait(GUARD)
        assert state.stats.requests == 1
        holders[-1][0].join(GUARD)
        # Another thread takes the lock while the block fails: its verdict waits.
        holders.append(holding())
        may_fail.set()
        assert not failed.wait(0.5)
        assert state.stats.attempts == 0
        holders[-1][1].set()
        assert failed.wait(GUARD)
        assert state.stats.attempts == 1
        assert sw.health()["keys"]["k"]["failures"]  # type: ignore[index]
    finally:
        may_fail.set()
        for thread, give_back in holders:
            give_back.set()
            thread.join(GUARD)
        caller.join(GUARD)


# --- a held call ------------------------------------------------------------------------------


def test_a_held_call_changes_the_breaker_under_the_keys_lock_and_tells_after_it(
    clocks: Clocks,
) -> None:
    """Held until the probe's verdict, the call holds the key's lock at each change of the
    breaker and of the counters (its place among the held, its turn, its permit), and
    flushes what the breaker told meanwhile once the lock is free."""
    breaker = _breaker(clocks, recovery_timeout=1.0)
    _trip(breaker)
    due = breaker.retry_after()
    lock = threading.RLock()
    notes = spy_on(breaker, lock)
    stats = KeyStats()
    flushed: list[bool] = []

    def flush() -> None:
        flushed.append(lock._is_owned())  # type: ignore[attr-defined]

    async def scenario() -> Permit | None:
        call = asyncio.ensure_future(held(breaker, clocks.breaker_clock, None, stats, lock, flush))
        assert await turns(lambda: breaker.held == 1)
        clocks.advance(due)
        with lock:
            probe = breaker.admit()  # another call takes the probe first
        assert probe is not None
        assert not await turns(call.done, 200)  # it waits again, for the verdict
        with lock:
            breaker.record(probe, failure=False)  # the breaker closes
        assert await turns(call.done)
        return call.result()

    permit = run(clocks, scenario)
    assert permit is not None
    assert stats.held == 1
    assert {"verdict_in", "hold", "unhold", "admit", "depart"} <= {name for name, _ in notes}
    assert unlocked(notes) == [], f"held() changed the breaker without the lock: {notes}"
    assert flushed == [False]


def test_held_without_a_lock_keeps_its_own() -> None:
    """``held``'s lock is optional (a breaker of the caller's own): it still works."""
    loop = Clocks()
    try:
        breaker = _breaker(loop, recovery_timeout=10.0, hold=1.0)
        _trip(breaker)
        # the probe is due after the hold: no wait, no permit
        assert loop.run_until_complete(held(breaker, loop.breaker_clock, None)) is None
    finally:
        loop.close()


async def test_a_sync_probe_in_a_thread_answers_the_async_calls_held_behind_it() -> None:
    """A ``call_sync`` probe settles in its thread while async calls are held on the loop:
    its success releases them (their futures are answered through their loop, which in
    debug mode refuses a future set from another thread), and its failure fails them."""
    asyncio.get_running_loop().set_debug(True)
    policy = Policy(
        retry=RetryPolicy(max_attempts=1),
        breaker=BreakerPolicy(failure_threshold=1, recovery_timeout=2.0, hold=5.0),
        timeout=seawall.TimeoutPolicy(attempt=None, deadline=100.0),
    )
    now = [0.0]
    sw = Seawall(policy, clock=lambda: now[0], entrypoints=False)
    entered, gate = threading.Event(), threading.Event()
    verdicts = iter([True, False])  # the first probe succeeds, the second fails

    async def answer(name: str) -> str:
        return name

    async def refused() -> None:
        raise ConnectionRefusedError("down")

    def probe() -> str:
        entered.set()
        assert gate.wait(GUARD)
        if next(verdicts):
            return "probe"
        raise ConnectionRefusedError("still down")

    for succeeds in (True, False):
        with pytest.raises(ConnectionRefusedError):
            await sw.call(refused, key="up")  # opens the breaker
        breaker = sw.registry.view["up"].breaker
        now[0] += breaker.retry_after()
        entered.clear()
        gate.clear()
        thread_probe = asyncio.ensure_future(asyncio.to_thread(sw.using(key="up").call_sync, probe))
        assert await asyncio.to_thread(entered.wait, GUARD)  # the probe is at the upstream
        held_calls = [asyncio.ensure_future(sw.call(answer, f"held{i}", key="up")) for i in (1, 2)]
        for _ in range(200):  # bounded: the loop's turns until both wait
            if breaker.held == 2:
                break
            await asyncio.sleep(0)
        assert breaker.held == 2
        gate.set()
        if succeeds:
            assert await asyncio.wait_for(thread_probe, GUARD) == "probe"
            assert await asyncio.wait_for(asyncio.gather(*held_calls), GUARD) == ["held1", "held2"]
        else:
            with pytest.raises(ConnectionRefusedError):
                await asyncio.wait_for(thread_probe, GUARD)
            for call in held_calls:
                with pytest.raises(seawall.CircuitOpenError):
                    await asyncio.wait_for(call, GUARD)
        now[0] += 1000.0  # past the ramp and the window: the next round starts closed


# --- the fleet's wake from a thread -------------------------------------------------------------


server = server_fixture()


class Watched(asyncio.Event):
    """The store task's wake: notes each time the task parks on it (a round is over)."""

    def __init__(self) -> None:
        super().__init__()
        self.parked = asyncio.Event()

    async def wait(self) -> bool:  # type: ignore[override]
        self.parked.set()
        return await super().wait()


POLICY = Policy(
    breaker=BreakerPolicy(failure_threshold=2, recovery_timeout=30.0),
    retry=RetryPolicy(max_attempts=1),
)


def _member(url: str, prefix: str) -> tuple[Seawall, FleetStore, Watched]:
    """A fleet member whose task never runs an idle round (the interval is an hour)."""
    sw = Seawall(POLICY, entrypoints=False, state=Fleet(url, prefix=prefix, timeout=1.0))
    store = sw.store
    assert isinstance(store, FleetStore)
    sw.state_for("k", POLICY)  # starts the task, not run yet
    store.refresh = 3600.0  # no round but the first, unless news wakes it
    wake = store._wake = Watched()  # before the task first runs: it waits on this one
    return sw, store, wake


@pytest.fixture(autouse=True)
def _read_idle_keys_every_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle keys are read every round here (each ``IDLE_EVERY``-th round otherwise)."""
    monkeypatch.setattr(fleet_store, "IDLE_EVERY", 1)


@pytest.fixture
async def two(server: RedisServer) -> AsyncIterator[list[tuple[Seawall, FleetStore, Watched]]]:
    prefix = f"races{id(server)}{free_port()}"
    made = [_member(server.url, prefix) for _ in range(2)]
    yield made
    for sw, _, _ in made:
        async with asyncio.timeout(GUARD):  # a task woken from a thread may never end
            await sw.aclose()


async def test_a_thread_that_opens_a_fleet_breaker_wakes_the_store_task(
    two: list[tuple[Seawall, FleetStore, Watched]],
) -> None:
    """A sync call in a worker thread opens the key's breaker: the store's task (on the
    event loop) is woken through the loop and publishes the vote at once, not at its next
    idle round (an hour away). The loop runs in debug mode, which refuses a wake set from
    another thread (before, the thread set the ``asyncio.Event`` itself: RuntimeError)."""
    asyncio.get_running_loop().set_debug(True)
    (a, a_store, a_wake), (b, b_store, _) = two
    async with asyncio.timeout(GUARD):
        await a_wake.parked.wait()  # the first round is over: linked, the task waits
    assert a_store.linked
    a_wake.parked.clear()

    def failing() -> None:
        raise ConnectionResetError

    def in_thread() -> None:
        for _ in range(2):
            with pytest.raises(ConnectionResetError):
                a.using(key="k").call_sync(failing)

    await asyncio.to_thread(in_thread)
    breaker = a.state_for("k", POLICY).breaker
    assert isinstance(breaker, FleetBreaker)
    assert breaker.voter  # opened here: its vote waits for a round
    async with asyncio.timeout(GUARD):  # the hang guard; the idle round is an hour away
        await a_wake.parked.wait()  # woken: a round ran and the task waits again
    # b, with a failure of its own, reads a's vote and opens (the partition guard).
    b_breaker = b.state_for("k", POLICY).breaker
    b_breaker.call_failed()
    assert await b_store.sync()
    assert b_breaker.is_open()


def test_news_after_the_stores_loop_closed_does_not_raise() -> None:
    """The store's loop is gone (closed) while its task waited: news from a thread no
    longer wakes anything, and the caller is not troubled (before: RuntimeError)."""
    loop = asyncio.new_event_loop()
    # No Redis there: the store runs on in-process state (no connection to leave open).
    sw = Seawall(
        POLICY,
        entrypoints=False,
        state=Fleet(f"redis://127.0.0.1:{free_port()}", timeout=0.2),
    )
    store = sw.store
    assert isinstance(store, FleetStore)

    async def started() -> Watched:
        sw.state_for("k", POLICY)
        wake = store._wake = Watched()
        async with asyncio.timeout(GUARD):
            await wake.parked.wait()
        return wake

    loop.run_until_complete(started())
    task = store._task
    assert task is not None
    loop.close()
    try:
        store.demanded("k")  # from this thread, no loop running: nothing to wake, no error
    finally:
        # The task cannot finish on a closed loop: end its coroutine, and say nothing of it.
        task._log_destroy_pending = False  # type: ignore[attr-defined]
        task._coro.close()  # type: ignore[attr-defined]
        # The news found the task dead and started it again in the fleet's own thread (no
        # loop runs here): end it.
        assert store._thread is not None
        asyncio.run(sw.aclose())
        assert not store._thread
