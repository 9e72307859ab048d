"""The watchdog's documented numbers: limits from 1 s up, enforced at most 0.1 s early."""

from __future__ import annotations

import asyncio
import time

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


async def test_watch_counts_from_the_reading_it_is_given_on_a_stock_loop() -> None:
    """On a stock loop (its clock is ``time.monotonic()``) ``watch(task, s, now=t)`` is due
    at ``t + s``; without ``now`` it reads the clock itself."""
    dog = watchdog.of(asyncio.get_running_loop())
    assert dog.stock
    task = asyncio.ensure_future(asyncio.sleep(3600))
    try:
        dog.watch(task, 5.0, now=100.0)
        assert dog.deadlines[task] == 105.0
        before = time.monotonic()
        dog.watch(task, 5.0)
        assert before + 5.0 <= dog.deadlines[task] <= time.monotonic() + 5.0
    finally:
        dog.done(task)  # before the loop runs the sweep armed for 105.0
        task.cancel()
    assert task not in dog.deadlines
