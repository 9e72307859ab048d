"""The coarse per-attempt timer: on time (never late), and never confused with cancellation."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable

import pytest

import seawall
from seawall import watchdog


def _sw(attempt: float) -> seawall.Seawall:
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        timeout=seawall.TimeoutPolicy(attempt=attempt, deadline=None),
    )
    return seawall.Seawall(policy, entrypoints=False)


class FrozenClockLoop(asyncio.SelectorEventLoop):
    """A real event loop whose clock moves only when the test moves it.

    Timers fire when the test has moved ``now`` past them, in the loop's next
    turns; I/O and ready callbacks run as usual. The watchdog reads
    ``loop.time()`` on a loop like this (not ``time.monotonic()``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def time(self) -> float:
        return self.now


async def _turns(done: Callable[[], bool], turns: int = 50) -> bool:
    """Let the loop run up to ``turns`` turns (no time passes); whether ``done`` came true."""
    for _ in range(turns):
        if done():
            return True
        await asyncio.sleep(0)
    return done()


async def _hanging(
    limits: dict[str, float],
) -> tuple[dict[str, asyncio.Future[None]], Callable[[], set[str]]]:
    """One call per name that never answers, each under its attempt limit, all begun; returns
    the calls by name and a function that names those that have ended."""
    never = asyncio.Event()
    entered: list[str] = []

    async def hang(name: str) -> None:
        entered.append(name)
        await never.wait()

    tasks = {
        name: asyncio.ensure_future(_sw(limit).call(hang, name, key=name))
        for name, limit in limits.items()
    }
    assert await _turns(lambda: len(entered) == len(limits))

    def ended() -> set[str]:
        return {name for name, task in tasks.items() if task.done()}

    return tasks, ended


def test_attempt_limits_fire_on_time_or_up_to_one_grain_early_never_late() -> None:
    """On a clock the test moves: a 1 s limit fires at 1 s, not before; one due within the
    sweep's grain goes in the same sweep (early by < GRAIN); a later one waits for its own time.
    """
    loop = FrozenClockLoop()
    limits = {
        "on-time": watchdog.MIN_LIMIT,
        "in-grain": watchdog.MIN_LIMIT + watchdog.GRAIN / 2,
        "later": watchdog.MIN_LIMIT + 2 * watchdog.GRAIN,
    }

    async def scenario() -> None:
        assert not watchdog.of(loop).stock  # it reads loop.time(): this clock
        tasks, ended = await _hanging(limits)
        assert set(watchdog.of(loop).deadlines.values()) == set(limits.values())

        loop.now = watchdog.MIN_LIMIT - 1e-6  # just before the soonest limit: nothing fires
        assert not await _turns(lambda: bool(ended()))
        loop.now = watchdog.MIN_LIMIT  # the soonest limit: its sweep takes the one in its grain too
        assert await _turns(lambda: ended() == {"on-time", "in-grain"})
        assert not await _turns(lambda: "later" in ended(), turns=20)
        loop.now = limits["later"] - watchdog.GRAIN - 1e-6  # more than a grain early: not yet
        assert not await _turns(lambda: "later" in ended(), turns=20)
        loop.now = limits["later"]
        assert await _turns(lambda: "later" in ended())
        for task in tasks.values():
            with pytest.raises(TimeoutError):
                task.result()
        assert not watchdog.of(loop).deadlines

    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()


async def test_an_outside_cancellation_is_not_taken_for_a_timeout() -> None:
    """Cancelling the caller during a watched attempt raises CancelledError and counts nothing."""
    sw = _sw(30.0)
    entered = asyncio.Event()
    never = asyncio.Event()

    async def hang() -> None:
        entered.set()
        await never.wait()

    task = asyncio.ensure_future(sw.call(hang, key="cancelled"))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    key = sw.health()["keys"]["cancelled"]
    assert key["consecutive_failures"] == 0
    assert key["failures"] == {}


async def test_a_finished_attempt_is_no_longer_watched() -> None:
    """An attempt that ends in time leaves the watchdog, so no sweep cancels it."""
    sw = _sw(5.0)

    async def quick() -> str:
        assert asyncio.current_task() in watchdog.of(asyncio.get_running_loop()).deadlines
        return "done"

    assert await sw.call(quick, key="quick") == "done"
    assert not watchdog.of(asyncio.get_running_loop()).deadlines


def test_each_event_loop_has_its_own_slots() -> None:
    """Watches on two event loops, one after the other, both fire on their own loop."""

    async def one() -> None:
        never = asyncio.Event()
        with pytest.raises(TimeoutError):
            await _sw(watchdog.MIN_LIMIT).call(never.wait, key="loop")

    asyncio.run(one())
    asyncio.run(one())


def test_a_loop_that_is_gone_leaves_no_watchdog_behind() -> None:
    """``asyncio.run`` per job: each run's loop (and its watchdog) is freed once it is over."""
    sw = _sw(attempt=30.0)  # a long limit: the watchdog times the attempt

    async def job() -> weakref.ref[asyncio.AbstractEventLoop]:
        async def fn() -> int:
            return 1

        assert await sw.call(fn, key="k") == 1
        loop = asyncio.get_running_loop()
        assert asyncio.current_task() not in watchdog.of(loop).deadlines
        return weakref.ref(loop)

    loops = [asyncio.run(job()) for _ in range(3)]
    gc.collect()
    assert [ref() for ref in loops] == [None, None, None]  # and so their watchdogs' keys


# --- the running loop without asyncio.get_running_loop()'s getpid() -----------------


def test_loops_running_in_two_threads_at_once_each_watch_their_own_calls() -> None:
    """One ``Seawall``, two threads, each running its own loop at the same time and calling
    in turns: every attempt is watched by the watchdog of the loop that runs it, though the
    last loop seen changes at every turn."""
    sw = _sw(attempt=30.0)  # a long limit: the watchdog times the attempt
    turn = [threading.Event(), threading.Event()]
    seen: list[tuple[int, bool, bool]] = []

    async def job(me: int) -> None:
        loop = asyncio.get_running_loop()
        other = None

        async def fn() -> None:
            last = watchdog.LAST[0]  # looking must not change which loop was seen last
            task = asyncio.current_task()
            watched_here = task in watchdog.of(loop).deadlines
            watched_there = other is not None and task in watchdog.of(other).deadlines
            seen.append((me, watched_here, watched_there))
            watchdog.LAST[0] = last

        for _ in range(5):
            assert turn[me].wait(10), "the other thread never handed over"
            turn[me].clear()
            other = loops[1 - me]
            await sw.call(fn, key="k")
            turn[1 - me].set()

    loops: list[asyncio.AbstractEventLoop] = [asyncio.new_event_loop(), asyncio.new_event_loop()]
    threads = [
        threading.Thread(target=loops[me].run_until_complete, args=(job(me),)) for me in (0, 1)
    ]
    for thread in threads:
        thread.start()
    turn[0].set()
    for thread in threads:
        thread.join(20)
    for loop in loops:
        loop.close()
    assert [me for me, _, _ in seen] == [0, 1] * 5
    assert all(here and not there for _, here, there in seen), seen


_FORKED = """
import asyncio, os, sys
import seawall

policy = seawall.Policy(
    retry=seawall.RetryPolicy(max_attempts=1),
    timeout=seawall.TimeoutPolicy(attempt=1.0, deadline=None),
)
sw = seawall.Seawall(policy, entrypoints=False)

async def quick():
    return 1

async def hang():
    await asyncio.sleep(8)

async def child():
    try:
        await sw.call(hang, key="hang")
    except TimeoutError:
        return 0
    return 1

async def parent():
    await sw.call(quick, key="quick")  # the parent's loop is the last one seen
    pid = os.fork()
    if pid == 0:  # the child, still inside the parent's coroutine: a loop of its own
        os._exit(asyncio.run(child()))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)

sys.exit(asyncio.run(parent()))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_child_forked_inside_a_running_loop_watches_its_calls_on_its_own_loop() -> None:
    """The reason ``asyncio.get_running_loop()`` asks for the process id: a child forked
    from a coroutine inherits the parent's loop, marked as running in its one thread. Its own
    loop's calls must still be timed by its own loop's watchdog (the child's attempt limit
    fires at 1 s; a call watched on the parent's loop, which never runs in the child, would
    sleep its 8 s and return)."""
    done = subprocess.run(
        [sys.executable, "-c", _FORKED], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
