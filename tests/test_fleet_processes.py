"""The fleet with real OS processes: 4 workers, 50 callers in all, a real redis-server.

Each test runs workers (``fleet_worker.py``) against one upstream on
127.0.0.1 (``_fleet.FleetUpstream``) and asserts on counts the upstream saw
and on events the workers recorded (monotonic times, system-wide on Linux).
The scenario's phases are timed by the parent; nothing waits for state by
sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from tests._fleet import LINK_LIMIT, RECOVERY, REFRESH, FleetUpstream, configs, run_fleet
from tests._redis import RedisServer, server_fixture
from tests.fleet_worker import GRACE

pytestmark = pytest.mark.slow


server = server_fixture("function")


def opened(result: dict[str, Any]) -> bool:
    return any(state == "open" for _, state in result["states"])


async def test_a_partitioned_process_does_not_open_the_others(server: RedisServer) -> None:
    upstream = FleetUpstream()
    upstream.partitioned.add("0")
    async with TestServer(upstream.app(), host="127.0.0.1") as up:

        async def scenario(_t0: float) -> None:
            pass

        results = await run_fleet(configs(str(up.make_url("/")), server.url, 6.0), scenario)
    assert opened(results[0])  # the cut-off process opens its own breaker
    for result in results[1:]:
        assert not opened(result), result["states"]
        assert set(result["outcomes"]) == {"status 200"}, result["outcomes"]
        assert result["modes"][-1][1] == "shared"


async def test_outage_costs_the_fleet_little_and_one_probe_per_interval(
    server: RedisServer,
) -> None:
    upstream = FleetUpstream()
    steady_end, outage_end, end = 3.0, 13.0, 17.0
    async with TestServer(upstream.app(), host="127.0.0.1") as up:

        async def scenario(t0: float) -> None:
            await asyncio.sleep(steady_end)  # the scenario's timeline, not a wait for state
            upstream.dead = True
            await asyncio.sleep(outage_end - steady_end)
            upstream.dead = False

        # Detection takes two failed calls of one retry each in the first process
        # (every process detects at once, fleet or not); the fleet saves the rest.
        fleet = configs(
            str(up.make_url("/")), server.url, end, failure_threshold=2, retry={"max_attempts": 2}
        )
        results = await run_fleet(fleet, scenario)
    t0 = min(r["began"] for r in results)
    steady = upstream.count(t0 + 1, t0 + steady_end) / (steady_end - 1)
    assert steady > 100, f"the fleet sent {steady:.0f} calls/s in steady state; too loaded"
    bins = [
        upstream.count(t0 + steady_end + i / 4, t0 + steady_end + (i + 1) / 4)
        for i in range(int(4 * (outage_end - steady_end)))
    ]
    opens = [[round(t - t0, 2) for t, s in r["states"] if s == "open"][:3] for r in results]
    # Each worker's first opening in the outage, read from its own transitions (a loaded
    # machine opened the last one late: assuming "2 s into the outage" counted 11 probes > 9).
    first_opens = [
        min((t for t, s in r["states"] if s == "open" and t >= t0 + steady_end), default=None)
        for r in results
    ]
    assert None not in first_opens, opens
    tripped = min(t for t in first_opens if t is not None)
    settled = max(t for t in first_opens if t is not None)
    assert settled < t0 + outage_end - 3 * RECOVERY, f"the fleet opened late: {opens}"
    # The fleet's cost is counted from the first opening on: the calls before it are the
    # trip, which any breaker pays, shared or not. Its length is the failing calls' own
    # time plus the scheduling of ~50 callers; on a loaded machine (ten suites at once)
    # it took 0.4 s and 86 calls, nearly all of the 5 %. benchmarks/fleet.py measures
    # the whole outage's share (trip included).
    # Counted by when the workers sent them (X-Sent), not when the upstream (this process)
    # handled them: its loop, stalled on a loaded machine, handles two probes sent a second
    # apart closer together; and a call that left a worker before it opened is no probe.
    trip = upstream.count(t0 + steady_end, tripped, sent=True)
    cost = upstream.count(tripped, t0 + outage_end, sent=True)
    share = cost / (steady * (t0 + outage_end - tripped))
    print(f"outage: trip {trip} calls in {tripped - t0 - steady_end:.2f} s")  # -s
    assert share <= 0.05, f"{cost} calls once open: {share:.3f} of steady {bins} {opens}"
    # Once every breaker is open, only probes reach the upstream: one lease per interval.
    probes = upstream.count(settled, t0 + outage_end, sent=True)
    allowed = math.floor((t0 + outage_end - settled) / RECOVERY) + 1
    print(f"outage: {share:.3f} of steady, {probes} probes sent (at most {allowed})")  # -s
    assert probes <= allowed, (probes, allowed)
    # No burst after recovery: 1 s windows once the fleet closed again.
    closed_by = max(r["states"][-1][0] for r in results)
    assert all(r["states"][-1][1] == "closed" for r in results)
    start = closed_by
    windows = []
    while start + 1.0 <= t0 + end - 0.5:
        windows.append(upstream.count(start, start + 1.0))
        start += 1.0
    assert windows, "the fleet closed too late to measure"
    assert max(windows) <= 1.2 * steady, (windows, steady)


def local_from(modes: list[tuple[float, str]], at: float) -> float | None:
    """When, from ``at`` on, a worker's ``health().state`` was ``local-fallback`` (``at``
    itself if it already was: a loaded machine's slow round trip may have made it fall
    back just before), or ``None``."""
    before = [mode for t, mode in modes if t < at]
    if before and before[-1] == "local-fallback":
        return at
    return next((t for t, mode in modes if mode == "local-fallback" and t >= at), None)


def check_fall_back_and_resync(
    results: list[dict[str, Any]], lost: float, back: float, limit: float
) -> None:
    """Redis lost at ``lost`` and back at ``back``: no call failed, every worker ran on
    in-process state within ``limit`` s of its running time, shared again within 3 s of
    ``back``, and a 429 worker 0 saw after that made every worker wait."""
    for result in results:
        # zero failed calls: Redis going away is never a caller's problem
        assert set(result["outcomes"]) == {"status 200"}, result["outcomes"]
        modes = result["modes"]
        fell = local_from(modes, lost)
        assert fell is not None, modes
        # Within ``limit`` of the worker's own running time: what its event loop lost to a
        # loaded machine in between (its monitor's late ticks) is not the store's.
        stalled = sum(max(0.0, min(t, fell) - max(t - late, lost)) for t, late in result["stalls"])
        took = fell - lost
        assert took - stalled <= limit, f"fallback took {took:.3f} s ({stalled:.3f} s stalled)"
        shared = [t for t, mode in modes if mode == "shared" and t > fell]
        assert shared, modes
        assert shared[0] - back <= 3.0, f"resync took {shared[0] - back:.3f} s"
        # shared again: the 429 seen by worker 0 after Redis came back made everyone wait
        assert result["cooled"] is not None, result["id"]
        assert result["cooled"] > back


async def lose_redis_then_resync(
    server: RedisServer,
    outage: Callable[[], AbstractAsyncContextManager[None]],
    limit: float,
) -> None:
    """A 12 s fleet run: Redis lost 2 s in, for 3 s (``outage``), then one 429 "wait 4 s"
    seen by worker 0 alone, 4 s after it came back; ``check_fall_back_and_resync`` on it,
    each worker to fall back within ``limit`` s.

    Each worker must see more than 0.5 s of that wait left. 4 s, not 2: on a loaded host
    worker 0 may fall back for a moment when it meets the 429, and the wait reaches the
    fleet only when it links again (about 1 s)."""
    upstream = FleetUpstream()
    lost: list[float] = []
    back: list[float] = []
    async with TestServer(upstream.app(), host="127.0.0.1") as up:

        async def scenario(t0: float) -> None:
            loop = asyncio.get_running_loop()
            await asyncio.sleep(2.0)  # the scenario's timeline
            # Before the outage starts: ``kill`` also waits for the process to end, and a
            # worker may fall back before that wait returns on a loaded machine (it did).
            lost.append(loop.time())
            async with outage():
                await asyncio.sleep(3.0)
            back.append(loop.time())
            await asyncio.sleep(4.0)
            upstream.throttle_once.add("0")

        fleet = configs(str(up.make_url("/")), server.url, 12.0)
        results = await run_fleet(fleet, scenario)
    check_fall_back_and_resync(results, lost[0], back[0], limit)


async def test_redis_killed_then_restarted(server: RedisServer) -> None:
    @contextlib.asynccontextmanager
    async def killed() -> AsyncIterator[None]:
        server.kill()
        yield
        await asyncio.get_running_loop().run_in_executor(None, server.start)

    # Its connections reset: noticed by the next round, within one refresh (100 ms).
    await lose_redis_then_resync(server, killed, limit=REFRESH + 0.1)


async def test_redis_that_stalls_then_answers_again(server: RedisServer) -> None:
    # Redis stopped (SIGSTOP): it accepts connections and never answers, until SIGCONT.
    @contextlib.asynccontextmanager
    async def stopped() -> AsyncIterator[None]:
        server.pause()
        try:
            yield
        finally:
            server.resume()  # always: the fixture's kill must not meet a stopped server

    # Noticed by the round-trip time limit: within one refresh and one limit, not at
    # once as a killed one. The workers' limit is 150 ms (``_fleet.configs``), not the
    # default 50: with ten suites on two cores a round trip took more than 50 ms often
    # enough that a worker's half-second resync attempts kept failing after SIGCONT
    # ("resync took 3.573 s" against 3 s, twice in ten such runs).
    await lose_redis_then_resync(server, stopped, limit=REFRESH + LINK_LIMIT + 0.1)


RATE = 100.0  # the upstream's limit, requests/s, far below the callers' ~250/s
BURST = 5
LEARNT = 2.0  # seconds from the start after which the fleet has learnt the rate


async def throttled_run(redis: str | None) -> dict[str, int]:
    """What the upstream saw after ``LEARNT`` s from 4 workers, sharing or not: its 429s and
    successes (``ok``), those of them it handled on time (``*_on_time``: within ``LATE`` s
    of their send), how long it was stalled itself, and the callers stuck waiting at the
    end (see ``fleet_worker.GRACE``)."""
    upstream = FleetUpstream(rate=RATE, burst=BURST)
    async with TestServer(upstream.app(), host="127.0.0.1") as up:

        async def scenario(t0: float) -> None:
            await upstream.watch(t0 + 10.5)  # the scenario's timeline

        fleet = configs(str(up.make_url("/")), redis, 10.0, retry={"max_attempts": 5})
        results = await run_fleet(fleet, scenario)
    t0 = min(r["began"] for r in results)
    start, end = t0 + LEARNT, t0 + 10
    return {
        # ms the upstream (this process) was stalled: it admitted nothing meanwhile
        "upstream_stalled_ms": round(1000 * upstream.stalled(start, end)),
        "429": upstream.count(start, end, 429),
        "ok": upstream.count(start, end, 200),
        "429_on_time": upstream.count(start, end, 429, late=False),
        "ok_on_time": upstream.count(start, end, 200, late=False),
        "stuck": sum(r["stuck"] for r in results),
    }


async def test_a_rate_limited_upstream_sees_few_429s_from_the_fleet(server: RedisServer) -> None:
    # The same 4 processes with in-process state are measured beside the fleet by
    # benchmarks/fleet.py (part 2); since in-process pacing learns a level from a first
    # burst of 429s without collapsing, both stay under 0.05 there, so comparing the two
    # here would assert noise. What the fleet must show: few 429s, the upstream's limit
    # still used, and no caller left waiting.
    seen = await throttled_run(server.url)
    assert seen["stuck"] == 0, f"callers of the fleet still waiting {GRACE} s after the end: {seen}"
    # Issue 12's target. Counted over the requests the upstream handled within LATE s of
    # their send: when this test process (the upstream) stalls, the requests that queued
    # meanwhile reach its limiter at once and a burst of 5 refuses most of them, however
    # well the fleet paced them (a 0.94 s stall of it under load: 55 of 61 429s handled
    # late). The fleet's own stalls are counted: its sends are stamped when they leave.
    ratio = seen["429_on_time"] / max(seen["ok_on_time"], 1)
    assert ratio < 0.05, seen
    assert seen["ok_on_time"] > seen["ok"] / 2, f"the upstream was mostly late: {seen}"
    # at least 70 % of what the upstream admits after the learning time (a loaded
    # 2-core machine runs the 4 workers and the upstream), less what it could not admit
    # while it was stalled itself (its bucket holds no more than BURST meanwhile)
    running = 10 - LEARNT - seen["upstream_stalled_ms"] / 1000
    assert seen["ok"] > 0.7 * RATE * running, seen
