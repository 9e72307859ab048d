"""The watchdog's documented numbers: limits from 1 s up, enforced at most 0.1 s early."""

from __future__ import annotations

import asyncio
import time
import weakref

import pytest

from seawall import watchdog

from .test_watchdog import FrozenClockLoop, _hanging, _turns


def test_limits_from_one_second_are_watched_and_fire_at_most_a_tenth_early() -> None:
    """A 0.5 s limit is left to ``asyncio.timeout``; 1 s and longer are the watchdog's.
    One sweep takes what is due within 0.1 s, and nothing due later than that."""
    loop = FrozenClockLoop()
    limits = {"short": 0.5, "one": 1.0, "grain": 1.09, "beyond": 1.15}

    async def scenario() -> None:
        tasks, ended = await _hanging(limits)
        assert sorted(watchdog.of(loop).deadlines.values()) == [1.0, 1.09, 1.15]

        loop.now = 0.5
        assert await _turns(lambda: ended() == {"short"})
        loop.now = 1.0
        assert await _turns(lambda: ended() == {"short", "one", "grain"})
        assert not await _turns(lambda: "beyond" in ended(), turns=20)
        loop.now = 1.15
        assert await _turns(lambda: "beyond" in ended())
        for task in tasks.values():
            with pytest.raises(TimeoutError):
                task.result()

    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()


@pytest.mark.stock_loop
async def test_watch_counts_from_the_reading_it_is_given_on_a_stock_loop() -> None:
    """On a stock loop (its clock is ``time.monotonic()``) ``watch(task, s, now=t)`` is due
    at ``t + s``; without ``now`` it reads the clock itself."""
    dog = watchdog.of(asyncio.get_running_loop())
    assert dog.stock
    task = asyncio.ensure_future(asyncio.sleep(3600))
    try:
        due, outer = dog.watch(task, 5.0, now=100.0)
        assert (due, outer) == (105.0, 105.0)
        assert dog.deadlines[task] == 105.0
        dog.done(task, due, outer)  # before the loop runs the sweep armed for 105.0
        assert task not in dog.deadlines
        before = time.monotonic()
        due, outer = dog.watch(task, 5.0)
        assert before + 5.0 <= dog.deadlines[task] == due <= time.monotonic() + 5.0
        dog.done(task, due, outer)
    finally:
        task.cancel()
    assert task not in dog.deadlines


# --- watchdog.running(): the running loop from the last one seen -----------------------


class _NotAsyncios:
    """A loop that is not asyncio's own: it has no ``_thread_id`` to ask."""


async def test_the_running_loop_and_its_watchdog_come_from_the_last_loop_seen() -> None:
    """Asked twice, ``running()`` gives the running loop and its watchdog, the second time
    from the last loop seen; a loop that is not asyncio's own, or asyncio's own that runs
    nowhere, is never taken for the running one."""
    loop = asyncio.get_running_loop()
    first = watchdog.running()
    assert first == (loop, watchdog.of(loop))
    assert watchdog.running() == first

    idle = asyncio.new_event_loop()  # asyncio's own, not running: no thread of its own
    try:
        watchdog.of(idle)
        seen = watchdog.LAST[0]
        assert seen is not None
        assert seen[2]  # asyncio's own: its `_thread_id` is asked, and is not this thread
        assert watchdog.running() == first
    finally:
        idle.close()

    other = _NotAsyncios()  # `_thread_id` would raise here: it must not be asked
    watchdog.LAST[0] = (weakref.ref(other), watchdog.of(loop), False)  # type: ignore[arg-type]
    assert watchdog.running() == first
    seen = watchdog.LAST[0]
    assert seen is not None
    assert seen[0]() is loop  # the running loop is the last one seen again


def test_a_forked_child_starts_with_no_loop_seen() -> None:
    """What the fork hook runs in the child (the fork itself is
    ``test_a_child_forked_inside_a_running_loop_watches_its_calls_on_its_own_loop``,
    in a subprocess, out of coverage's sight)."""
    loop = asyncio.new_event_loop()
    try:
        watchdog.of(loop)
        assert watchdog.LAST[0] is not None
        watchdog._forget_in_child()
        assert watchdog.LAST == [None]
    finally:
        loop.close()
