"""Fleets through Redis: what sharing costs on the success path, and what it saves a fleet.

    python benchmarks/fleet.py [--quick] [--parts 0123]

Needs ``redis-server`` (Debian's package; started here on a free 127.0.0.1
port, no persistence) and ``seawall[redis]``; valgrind for part 0. Four
parts, about 3 minutes (``--quick``: about 1.5):

0. client instructions per request (callgrind, deterministic), in-process
   against shared state with the background task counted apart (per
   exchange with Redis; it runs 10 times a second whatever the traffic);
1. success-path overhead: one process, 64 callers, the raw loopback upstream;
   ``Seawall()`` against ``Seawall(state="redis://...")`` in interleaved
   rounds, medians of the time per request (wall and CPU);
2. a rate-limited upstream (100 requests/s, burst 5) and 4 worker processes,
   50 callers in all (~250 requests/s of demand): 429s per success after the
   first 2 s, in-process state against the fleet;
3. the upstream dies for a while: the fleet's calls during the outage as a
   share of the steady rate, calls in the settled outage (probes), and the
   busiest 1 s after recovery against steady, in-process state against the fleet.

The worker processes and the upstream are the tests' (``tests/fleet_worker.py``,
``tests/_fleet.py``), so the benchmark measures what the tests assert.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import VARIANTS, Upstream, closed_loop
from aiohttp.test_utils import TestServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from seawall import Seawall  # noqa: E402 (after the path to the tests' helpers)
from seawall.fleet import Fleet, FleetStore  # noqa: E402
from tests._fleet import FleetUpstream, configs, run_fleet  # noqa: E402
from tests._redis import RedisServer  # noqa: E402


async def overhead(redis: str, rounds: int, requests: int) -> list[str]:
    """Median µs per request, in-process against shared state (one process)."""
    with Upstream("raw") as up:
        times: dict[str, list[tuple[float, float]]] = {"in-process": [], "redis": []}
        made = {
            "in-process": Seawall(entrypoints=False),
            "redis": Seawall(entrypoints=False, state=redis),
        }
        sessions = {name: sw.session() for name, sw in made.items()}

        def fetcher(name: str) -> Any:
            session = sessions[name]

            async def fetch(url: str) -> str:
                async with session.get(url) as resp:
                    await resp.read()
                    return "ok" if resp.status == 200 else str(resp.status)

            return fetch

        for name in made:
            await closed_loop(fetcher(name), up.url, 256, 64)  # warm up (and link to Redis)
        for _ in range(rounds):
            for name in made:
                run = await closed_loop(fetcher(name), up.url, requests, 64)
                times[name].append((run["wall"] / requests * 1e6, run["cpu"] / requests * 1e6))
        for session in sessions.values():
            await session.close()
        state = made["redis"].health().state
        for sw in made.values():
            await sw.aclose()
    wall = {n: statistics.median(w for w, _ in t) for n, t in times.items()}
    cpu = {n: statistics.median(c for _, c in t) for n, t in times.items()}
    return [
        f"success path, {rounds} rounds of {requests} requests, 64 at a time (state: {state})",
        f"  in-process: {wall['in-process']:.1f} µs wall, {cpu['in-process']:.1f} µs CPU each",
        f"  redis:      {wall['redis']:.1f} µs wall, {cpu['redis']:.1f} µs CPU each",
        f"  ratio:      {wall['redis'] / wall['in-process']:.3f} wall, "
        f"{cpu['redis'] / cpu['in-process']:.3f} CPU",
    ]


async def _client(redis: str, url: str, requests: int, syncs: int) -> None:
    """Under callgrind: ``requests`` through one Seawall (shared when ``redis``), or ``syncs``."""
    state = Fleet(redis, refresh=5.0) if redis != "-" else None
    async with Seawall(entrypoints=False, state=state) as sw, sw.session() as session:
        if isinstance(sw.store, FleetStore):
            # No timed background round during the count (callgrind runs ~50x slower, so
            # even 5 s would land some in it): the exchanges are counted apart below.
            sw.store.refresh = 3600.0

        async def fetch(target: str) -> str:
            async with session.get(target) as resp:
                await resp.read()
                return "ok"

        # Under callgrind (~50x slower, more on a busy machine): bounded by the
        # subprocess's own timeout, not by closed_loop's default minute.
        await closed_loop(fetch, url, 256, 64, limit=1500)
        if requests:
            await closed_loop(fetch, url, requests, 64, limit=1500)
        store = sw.store
        if isinstance(store, FleetStore):
            for _ in range(syncs):  # bounded: the background task's work, counted alone
                await store.sync()


def _instructions(redis: str, url: str, requests: int, syncs: int) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    command += [__file__, "--client", redis, url, str(requests), str(syncs)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{out.stderr[-3000:]}")
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def instructions(redis: str, requests: int, syncs: int) -> list[str]:
    """Client instructions per request (callgrind), and per background exchange."""
    if shutil.which("valgrind") is None:
        return ["instructions: valgrind is not installed (apt-get install valgrind); skipped"]
    with Upstream("raw") as up, ThreadPoolExecutor(max_workers=2) as pool:
        runs = {
            name: [
                pool.submit(_instructions, target, up.url, 0, 0),
                pool.submit(_instructions, target, up.url, requests, 0),
            ]
            for name, target in (("in-process", "-"), ("redis", redis))
        }
        synced = pool.submit(_instructions, redis, up.url, 0, syncs)
        per = {n: (busy.result() - idle.result()) / requests for n, (idle, busy) in runs.items()}
        per_sync = (synced.result() - runs["redis"][0].result()) / syncs
    return [
        f"client instructions per request (callgrind, {requests} requests, 64 at a time)",
        f"  in-process: {per['in-process']:.0f}",
        f"  redis:      {per['redis']:.0f}  (ratio {per['redis'] / per['in-process']:.3f})",
        f"  one background exchange with Redis (one key): {per_sync:.0f} instructions;"
        f" at 10 per second and 1,000 requests/s: {per_sync * 10 / 1000:.0f} per request"
        f" ({per_sync * 10 / 1000 / per['in-process']:.1%})",
    ]


async def throttled(redis: str | None, duration: float) -> tuple[int, int, int, int]:
    """429s and successes after the first 2 s, and those of them the upstream (this
    process) handled on time (within ``tests._fleet.LATE`` of their send: the test's
    measure; a stall of the upstream's own bunches the requests that queued meanwhile)."""
    upstream = FleetUpstream(rate=100.0, burst=5)
    async with TestServer(upstream.app(), host="127.0.0.1") as up:

        async def scenario(_t0: float) -> None:
            pass

        fleet = configs(str(up.make_url("/")), redis, duration, retry={"max_attempts": 5})
        results = await run_fleet(fleet, scenario)
    t0 = min(r["began"] for r in results)
    start, end = t0 + 2, t0 + duration
    return (
        upstream.count(start, end, 429),
        upstream.count(start, end, 200),
        upstream.count(start, end, 429, late=False),
        upstream.count(start, end, 200, late=False),
    )


async def outage(redis: str | None, steady: float, down: float, after: float) -> list[float]:
    upstream = FleetUpstream()
    async with TestServer(upstream.app(), host="127.0.0.1") as up:

        async def scenario(_t0: float) -> None:
            await asyncio.sleep(steady)  # the scenario's timeline
            upstream.dead = True
            await asyncio.sleep(down)
            upstream.dead = False

        fleet = configs(
            str(up.make_url("/")),
            redis,
            steady + down + after,
            failure_threshold=2,
            retry={"max_attempts": 2},
        )
        results = await run_fleet(fleet, scenario)
    t0 = min(r["began"] for r in results)
    rate = upstream.count(t0 + 1, t0 + steady) / (steady - 1)
    calls = upstream.count(t0 + steady, t0 + steady + down)
    probes = upstream.count(t0 + steady + 2, t0 + steady + down)
    start, windows = t0 + steady + down, []
    while start + 1 <= t0 + steady + down + after - 0.5:
        windows.append(upstream.count(start, start + 1))
        start += 1
    return [rate, calls / (rate * down), probes, max(windows) / rate if windows else 0.0]


async def main(quick: bool, parts: str) -> None:
    server = RedisServer()
    server.start()
    try:
        if "0" in parts:
            for line in instructions(server.url, 300 if quick else 1000, 20 if quick else 50):
                print(line)
            print()
        if "1" in parts:
            for line in await overhead(server.url, 3 if quick else 7, 1000 if quick else 3000):
                print(line)
        duration = 6.0 if quick else 10.0
        if "2" in parts:
            print(
                f"\nrate-limited upstream (100/s, burst 5), 4 processes, 50 callers,"
                f" {duration:.0f} s; 429s per success after the first 2 s"
            )
            for name, url in (("in-process", None), ("fleet", server.url)):
                errors, ok, errors_on_time, ok_on_time = await throttled(url, duration)
                print(
                    f"  {name:10} {errors:4d} 429s / {ok:4d} successes = {errors / max(ok, 1):.3f};"
                    f" handled on time: {errors_on_time:4d} / {ok_on_time:4d}"
                    f" = {errors_on_time / max(ok_on_time, 1):.3f}"
                )
        down = 6.0 if quick else 10.0
        if "3" in parts:
            print(f"\nupstream down {down:.0f} s, 4 processes, 50 callers, recovery timeout 1 s")
            print(
                "  state       steady/s  outage share  settled-outage calls"
                "  busiest 1 s after / steady"
            )
            for name, url in (("in-process", None), ("fleet", server.url)):
                rate, share, probes, peak = await outage(url, 3.0, down, 4.0)
                print(f"  {name:10} {rate:9.0f} {share:13.3f} {probes:21.0f} {peak:27.2f}")
    finally:
        server.kill()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        target, where, count, syncs = sys.argv[2:6]
        asyncio.run(_client(target, where, int(count), int(syncs)))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs: proves it works")
    parser.add_argument("--parts", default="0123", help="which parts to run (0: instructions only)")
    args = parser.parse_args()
    assert "seawall" in VARIANTS  # the same harness as the other benchmarks
    asyncio.run(main(args.quick, args.parts))
