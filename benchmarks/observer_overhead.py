"""Cost of observing seawall: bare aiohttp vs seawall, + Prometheus collector, + an event plugin.

64 concurrent GETs per batch to an aiohttp server in a child process on
127.0.0.1; the variants run in interleaved rounds and the medians of their
throughputs are reported, as ratios to bare aiohttp.

    python benchmarks/observer_overhead.py [--rounds 7] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest

import seawall
from seawall.plugins.prometheus import PrometheusPlugin

SERVER = """
import sys
from aiohttp import web
async def ok(_):
    return web.Response(text="ok")
app = web.Application()
app.router.add_get("/", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=lambda *_: print("up", flush=True))
"""


class Events:
    """A seawall_event plugin that only counts."""

    def __init__(self) -> None:
        self.n = 0

    @seawall.hookimpl
    def seawall_event(self, event: object) -> None:
        self.n += 1


async def _batch(session: aiohttp.ClientSession, url: str, total: int) -> float:
    sem = asyncio.Semaphore(64)

    async def one() -> None:
        async with sem, session.get(url) as resp:
            await resp.read()

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(total)))
    return total / (time.perf_counter() - t0)


def _variants() -> tuple[dict[str, Callable[[], aiohttp.ClientSession]], CollectorRegistry]:
    conn = {"limit": 64}
    registry = CollectorRegistry()
    plain = seawall.Seawall(entrypoints=False)
    prom = seawall.Seawall(plugins=[PrometheusPlugin(registry)], entrypoints=False)
    events = seawall.Seawall(plugins=[Events()], entrypoints=False)
    return {
        "bare aiohttp": lambda: aiohttp.ClientSession(connector=aiohttp.TCPConnector(**conn)),
        "seawall": lambda: plain.session(connector=aiohttp.TCPConnector(**conn)),
        "seawall + prometheus": lambda: prom.session(connector=aiohttp.TCPConnector(**conn)),
        "seawall + seawall_event": lambda: events.session(connector=aiohttp.TCPConnector(**conn)),
    }, registry


async def main(rounds: int, requests: int, port: int) -> None:
    url = f"http://127.0.0.1:{port}/"
    variants, registry = _variants()
    results: dict[str, list[float]] = {name: [] for name in variants}
    for number in range(rounds + 1):  # round 0 warms up and is dropped
        for name, make in variants.items():
            async with make() as session:
                rate = await _batch(session, url, requests)
            if number:
                results[name].append(rate)
        generate_latest(registry)  # a scrape per round, as Prometheus would
    base = statistics.median(results["bare aiohttp"])
    print(f"{'variant':<26}{'median req/s':>14}{'vs bare':>10}")
    for name, rates in results.items():
        median = statistics.median(rates)
        print(f"{name:<26}{median:>14.0f}{median / base:>10.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--port", type=int, default=18931)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "up"
        asyncio.run(main(args.rounds, args.requests, args.port))
    finally:
        server.terminate()
        server.wait(5)
