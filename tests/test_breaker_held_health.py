"""Held calls are visible in ``health()`` (now and in all) and the demo reads them."""

from __future__ import annotations

import asyncio

import pytest

import seawall
from seawall.breaker import BreakerState
from seawall.cli.demo import held as demo_held

from .test_breaker import Clock
from .test_breaker_hold import Upstream, _open, _probing, _seawall, _until


async def test_health_reports_calls_held_now_and_in_all() -> None:
    clock, up = Clock(), Upstream()
    sw = _seawall(clock)
    breaker = await _open(sw, up)
    probe = await _probing(sw, up, clock)
    waiting = [asyncio.create_task(sw.call(up, f"held{i}", key="up")) for i in range(2)]
    await _until(lambda: breaker.held == 2)
    report = sw.health()
    assert report.by_key["up"].held == 2
    assert report.by_key["up"].held_total == 2
    assert report.held_total == 2
    assert demo_held(sw) == 2  # the demo's reader finds the field
    up.gate.set()
    assert await probe == "probe"
    assert sorted(await asyncio.gather(*waiting)) == ["held0", "held1"]
    report = sw.health()
    assert report.by_key["up"].held == 0  # none waits now
    assert report.by_key["up"].held_total == 2  # each counted once, though it woke again
    assert demo_held(sw) == 0
    sw.reset_metrics()
    assert sw.health().by_key["up"].held_total == 0


async def test_a_call_failed_at_once_is_not_counted_as_held() -> None:
    clock, up = Clock(), Upstream()
    sw = _seawall(clock, hold=0.5)  # the probe is due in 2 s: too far to hold
    await _open(sw, up)
    with pytest.raises(seawall.CircuitOpenError):
        await sw.call(up, "far", key="up")
    assert sw.health().by_key["up"].held_total == 0


async def test_the_breaker_measures_the_rate_after_reset_metrics() -> None:
    """``reset_metrics`` replaces a key's counters; the breaker must read the new ones."""
    clock, up = Clock(), Upstream()
    sw = _seawall(clock)
    up.gate.set()
    assert await sw.call(up, "first", key="up") == "first"
    sw.reset_metrics()
    breaker = sw.registry.view["up"].breaker
    up.fail = True
    with pytest.raises(ConnectionRefusedError):
        await sw.call(up, "a", key="up")  # trips (threshold 1): the rate mark is set here
    assert breaker.state is BreakerState.OPEN
    clock.advance(breaker.retry_after())
    up.fail = False
    for index in range(10):  # 10 calls in the next second: the probe and what follows
        await sw.call(up, f"c{index}", key="up")
        clock.advance(0.1)
    up.fail = True
    with pytest.raises(ConnectionRefusedError):
        await sw.call(up, "b", key="up")
    assert breaker.state is BreakerState.OPEN
    assert breaker.rate > 0  # was 0: the breaker counted calls on the old, dropped counters
