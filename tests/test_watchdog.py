"""The coarse per-attempt timer: on time (never late), and never confused with cancellation."""

from __future__ import annotations

import asyncio

import pytest

import seawall
from seawall import watchdog


def _sw(attempt: float) -> seawall.Seawall:
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        timeout=seawall.TimeoutPolicy(attempt=attempt, deadline=None),
    )
    return seawall.Seawall(policy, entrypoints=False)


async def test_a_long_attempt_limit_fires_within_one_grain_early_never_late() -> None:
    """An attempt limit of 1 s cancels a hung attempt between 0.9 s and ~1 s, as TimeoutError."""
    never = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await _sw(watchdog.MIN_LIMIT).call(never.wait, key="hung")
    elapsed = loop.time() - started
    assert watchdog.MIN_LIMIT - watchdog.GRAIN - 0.01 <= elapsed <= watchdog.MIN_LIMIT + 0.05


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
