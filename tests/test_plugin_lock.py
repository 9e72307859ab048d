"""Plugins are never called under a key's lock: one blocking in a thread leaves the loop alone.

A key's books (breaker, budget, cooldown, counters) are kept under one of
``LOCK_STRIPES`` shared reentrant locks, which the event loop takes too around
each call's updates. Plugins (classifiers, backoff, ``seawall_event`` observers)
are called only after the lock is released (docs/sync.md, "Threads"). Before,
they were called under it: a sync caller's plugin that blocked held the event
loop thread as soon as it touched the key, or any key sharing the stripe, and
every test below failed (the loop's calls waited for the plugin's hang guard).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

import seawall
from seawall import events
from seawall.outcome import Classification, Outcome
from seawall.policy import BreakerPolicy, Policy, RetryPolicy
from seawall.state import LOCK_STRIPES

GUARD = 10.0  # seconds: how long a plugin blocks at most (a hang guard, never a target)

#: No waits between attempts, whatever the backoff says (the tests run in test mode too).
QUICK = RetryPolicy(max_attempts=2, base_delay=0.0, jitter="none")


def same_stripe(key: str) -> str:
    """Another key whose state shares ``key``'s lock (keys are hashed onto the stripes)."""
    stripe = hash(key) % LOCK_STRIPES
    for n in range(100 * LOCK_STRIPES):  # bounded; a miss has odds below e^-99
        other = f"{key}-neighbour-{n}"
        if hash(other) % LOCK_STRIPES == stripe:
            return other
    msg = "no key on the same stripe found"  # pragma: no cover
    raise AssertionError(msg)  # pragma: no cover


class BlocksInThreads:
    """Blocks once in ``hook`` (for events: of ``kind``), in a thread other than the loop's."""

    def __init__(self, loop_thread: threading.Thread, hook: str, kind: str = "") -> None:
        self.loop_thread = loop_thread
        self.hook = hook
        self.kind = kind
        self.entered = threading.Event()
        self.release = threading.Event()
        self.left = threading.Event()

    def _maybe_block(self, hook: str, kind: str = "") -> None:
        if (
            hook == self.hook
            and kind == self.kind
            and threading.current_thread() is not self.loop_thread
            and not self.entered.is_set()
        ):
            self.entered.set()
            self.release.wait(GUARD)  # the hang guard: it leaves by itself in the end
            self.left.set()

    @seawall.hookimpl
    def seawall_classify(self, outcome: Outcome) -> Classification | None:
        self._maybe_block("classify")
        return None

    @seawall.hookimpl
    def seawall_backoff(self, attempt: int) -> float | None:
        self._maybe_block("backoff")
        return 0.0

    @seawall.hookimpl
    def seawall_event(self, event: events.Event) -> None:
        self._maybe_block("event", event.kind)


def _failing_then(answer: object, failures: int) -> Callable[[], object]:
    """A plain function that raises a reset ``failures`` times, then returns ``answer``."""
    left = [failures]

    def fn() -> object:
        if left[0] > 0:
            left[0] -= 1
            raise ConnectionResetError("reset")  # a network failure: classified, retried
        return answer

    return fn


#: (hook, event kind, policy of the thread's call, failures before success, what it gives)
CASES = {
    "classify": ("classify", "", Policy(retry=QUICK), 1, "ok"),
    "backoff": ("backoff", "", Policy(retry=QUICK), 1, "ok"),
    "attempt event": ("event", "attempt", Policy(retry=QUICK), 1, "ok"),
    "retry event": ("event", "retry", Policy(retry=QUICK), 1, "ok"),
    # the give-up path: the call's last event, after the failures were counted
    "giving up": ("event", "call", Policy(retry=QUICK), 5, ConnectionResetError),
    # the breaker opens as the call gives up (one failed call is enough here)
    "breaker transition": (
        "event",
        "breaker",
        Policy(retry=QUICK, breaker=BreakerPolicy(failure_threshold=1)),
        5,
        ConnectionResetError,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_plugin_blocking_in_a_thread_does_not_stall_the_event_loop(case: str) -> None:
    hook, kind, policy, failures, gives = CASES[case]
    plugin = BlocksInThreads(threading.current_thread(), hook, kind)
    sw = seawall.Seawall(policy, plugins=[plugin], entrypoints=False)
    neighbour = same_stripe("k")
    fn = _failing_then("ok", failures)

    def in_thread() -> object:
        try:
            return sw.using(key="k").call_sync(fn)
        except ConnectionResetError as exc:
            return type(exc)

    worker = asyncio.ensure_future(asyncio.to_thread(in_thread))
    assert await asyncio.to_thread(plugin.entered.wait, GUARD), "the plugin was never called"
    try:

        async def answer() -> int:
            return 1

        async def outcome(key: str) -> object:
            try:
                return await sw.call(answer, key=key)
            except seawall.CircuitOpenError:
                return "open"  # the thread's call opened the breaker: an answer all the same

        # The loop's own calls, on the same key and on one sharing its lock, while
        # the thread's plugin still blocks: none may wait for it.
        same = await outcome("k")
        other = await outcome(neighbour)
        blocked_loop = plugin.left.is_set()  # the loop's calls waited for the plugin to leave
    finally:
        plugin.release.set()
        got = await worker
    assert not blocked_loop, "the event loop waited for a plugin blocking in another thread"
    assert same in (1, "open")
    assert other == 1
    assert got == gives  # the thread's call went on as before once the plugin returned


class LockSpy:
    """Notes for every hook call whether the key's lock was held; raises every time."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.calls: list[tuple[str, bool]] = []
        self.kinds: list[str] = []

    def _note(self, hook: str) -> None:
        self.calls.append((hook, self.lock._is_owned()))
        raise RuntimeError(f"{hook} fails on purpose")  # seawall skips it, counted

    @seawall.hookimpl
    def seawall_classify(self, outcome: Outcome) -> Classification | None:
        self._note("classify")
        return None  # pragma: no cover - _note raises

    @seawall.hookimpl
    def seawall_backoff(self, attempt: int) -> float | None:
        self._note("backoff")
        return None  # pragma: no cover - _note raises

    @seawall.hookimpl
    def seawall_event(self, event: events.Event) -> None:
        self.kinds.append(event.kind)
        self._note("event")


async def test_no_plugin_is_called_under_the_keys_lock_and_one_that_raises_changes_nothing() -> (
    None
):
    """Both drivers, every hook and event kind: retries, giving up, the breaker's three moves,
    a rejection, a probe. The spy raises in each call: seawall skips it, the lock is free after."""
    now = [1000.0]
    policy = Policy(retry=QUICK, breaker=BreakerPolicy(failure_threshold=2, recovery_timeout=10.0))
    sw = seawall.Seawall(policy, entrypoints=False, clock=lambda: now[0])
    lock = sw.state_for("k", policy).lock
    spy = LockSpy(lock)
    sw.plugin_manager.register(spy)

    async def flaky_async(fn: Callable[[], object]) -> object:
        return fn()

    def in_thread(fn: Callable[[], object]) -> object:
        return sw.using(key="k").call_sync(fn)

    for driver in ("async", "thread"):

        async def call(fn: Callable[[], object], driver: str = driver) -> object:
            if driver == "async":
                return await sw.using(key="k").call(flaky_async, fn)
            return await asyncio.to_thread(in_thread, fn)

        assert await call(_failing_then("ok", 1)) == "ok"  # a retry, then success
        for _ in range(2):  # two calls give up: the breaker opens
            with pytest.raises(ConnectionResetError):
                await call(_failing_then("ok", 5))
        with pytest.raises(seawall.CircuitOpenError):
            await call(_failing_then("ok", 0))  # refused while open
        now[0] += 60.0  # past the recovery timeout: the next call is the probe
        assert await call(_failing_then("ok", 0)) == "ok"  # half-open, then closed
        assert not lock._is_owned()
        assert lock.acquire(blocking=False)  # no other thread holds it either
        lock.release()

    hooks = {hook for hook, _ in spy.calls}
    assert hooks == {"classify", "backoff", "event"}
    assert {"attempt", "retry", "call", "breaker", "rejected"} <= set(spy.kinds)
    assert spy.kinds.count("breaker") == 6  # closed->open, open->half_open, ->closed; twice
    under_lock = [hook for hook, owned in spy.calls if owned]
    assert under_lock == [], f"plugins called under the key's lock: {under_lock}"
    # The books of the 2 x 5 calls, whatever the spy raised.
    health = sw.health()["keys"]["k"]  # type: ignore[index]
    assert health["state"] == "closed"


def test_one_calls_events_keep_their_order_in_a_thread() -> None:
    """attempt, retry, attempt, the breaker's move, then the call's end: as before."""
    kinds: list[str] = []

    class Recorder:
        @seawall.hookimpl
        def seawall_event(self, event: events.Event) -> None:
            kinds.append(event.kind)

    policy = Policy(retry=QUICK, breaker=BreakerPolicy(failure_threshold=1))
    sw = seawall.Seawall(policy, plugins=[Recorder()], entrypoints=False)
    with pytest.raises(ConnectionResetError):
        sw.using(key="k").call_sync(_failing_then("ok", 5))
    assert kinds == ["attempt", "retry", "attempt", "breaker", "call"]


async def test_an_on_predicate_that_raises_still_leaves_the_attempts_verdict() -> None:
    """``on=`` is asked before the lock now; when it raises, the attempt is still counted
    and its failure still reaches the breaker, as when it was asked under the lock."""
    sw = seawall.Seawall(entrypoints=False)

    def broken(exc: BaseException) -> bool:
        raise ZeroDivisionError("the caller's predicate is broken")

    async def failing() -> None:
        raise ConnectionResetError("reset")

    with pytest.raises(ZeroDivisionError):
        await sw.using(key="k", on=broken).call(failing)
    health = sw.health()["keys"]["k"]  # type: ignore[index]
    assert (health.requests, health.attempts) == (1, 1)
    assert health.failure_rate == 1.0  # the breaker heard of the failure
    assert health.last_failure is not None
