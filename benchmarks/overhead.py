"""Success-path overhead: bare aiohttp, a pass-through middleware, seawall.

End to end: ``--concurrency`` concurrent requests to the loopback upstream
(its own process), the variants interleaved in ``--rounds`` rounds of
``--requests`` requests each; medians of throughput and of client CPU time per
request (``time.process_time``: this process only).

Pure decision cost, without network: ``Seawall.run()`` around an attempt that
returns ``Attempt(value, 200, headers)`` at once, against a bare ``await
attempt()``; also the whole middleware-side path (route lookup, ``CallSpec``,
``run``). Medians of rounds, per call.

    python benchmarks/overhead.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from _common import VARIANTS, Upstream, closed_loop, emit, median, table

NAMES = ["bare", "passthrough", "seawall"]
SERVERS = {"aiohttp": "aiohttp server", "raw": "minimal asyncio HTTP server (client-bound)"}


async def end_to_end(
    rounds: int, requests: int, concurrency: int, server: str = "aiohttp"
) -> dict[str, Any]:
    """Interleaved rounds of every variant; medians of rps and CPU µs/request."""
    rps: dict[str, list[float]] = {n: [] for n in NAMES}
    cpu: dict[str, list[float]] = {n: [] for n in NAMES}
    failures: dict[str, int] = dict.fromkeys(NAMES, 0)
    with Upstream(server) as upstream:
        for r in range(rounds):
            order = NAMES if r % 2 == 0 else NAMES[::-1]  # alternate to cancel drift
            for name in order:
                async with VARIANTS[name].open() as fetch:
                    await closed_loop(fetch, upstream.url, concurrency, concurrency)  # warm
                    run = await closed_loop(fetch, upstream.url, requests, concurrency)
                rps[name].append(run["requests"] / run["wall"])
                cpu[name].append(run["cpu"] / run["requests"] * 1e6)
                failures[name] += run["requests"] - run["outcomes"].get("ok", 0)
    med_rps = {n: median(rps[n]) for n in NAMES}
    med_cpu = {n: median(cpu[n]) for n in NAMES}
    return {
        "rps": med_rps,
        "cpu_us": med_cpu,
        "rounds_rps": rps,
        "failures": failures,
        "ratio_to_bare": {n: med_rps[n] / med_rps["bare"] for n in NAMES},
        "ratio_to_passthrough": {n: med_rps[n] / med_rps["passthrough"] for n in NAMES},
        "added_cpu_us_vs_bare": {n: med_cpu[n] - med_cpu["bare"] for n in NAMES},
        "added_cpu_us_vs_passthrough": {n: med_cpu[n] - med_cpu["passthrough"] for n in NAMES},
    }


async def decision_cost(rounds: int, calls: int) -> dict[str, float]:
    """µs per call: bare attempt, ``Seawall.run``, and the middleware-side path."""
    from _common import seawall_policy
    from yarl import URL

    import seawall
    from seawall.engine import Attempt, CallSpec

    sw = seawall.Seawall(seawall_policy(), entrypoints=False)
    url = URL("http://127.0.0.1:8080/items")
    headers = {"Content-Type": "application/json"}
    key, policy = sw.resolve(url)
    state = sw.state_for(key, policy)
    value = object()

    async def attempt(_number: int) -> Attempt:
        return Attempt(value, 200, headers)

    def spec() -> CallSpec:
        return CallSpec(
            key=key, policy=policy, state=state, method="GET", url=url, context={}, http=True
        )

    async def bare() -> float:
        t = time.perf_counter()
        for _ in range(calls):
            await attempt(1)
        return time.perf_counter() - t

    async def run_only() -> float:
        s = spec()
        t = time.perf_counter()
        for _ in range(calls):
            await sw.run(s, attempt)
        return time.perf_counter() - t

    async def path() -> float:
        from seawall.context import current_context

        t = time.perf_counter()
        for _ in range(calls):
            k, p = sw.resolve(url)
            s = CallSpec(
                key=k,
                policy=p,
                state=sw.state_for(k, p),
                method="GET",
                url=url,
                context=current_context(),
                idempotent="GET" in p.retry.retry_methods,
                replayable=lambda: True,
                discard=lambda _v: None,
                http=True,
            )
            await sw.run(s, attempt)
        return time.perf_counter() - t

    timings: dict[str, list[float]] = {"bare": [], "run": [], "path": []}
    for _ in range(rounds):
        for name, fn in (("bare", bare), ("run", run_only), ("path", path)):
            timings[name].append(await fn() / calls * 1e6)
    await sw.aclose()
    result = {name: median(values) for name, values in timings.items()}
    result["run_minus_bare"] = result["run"] - result["bare"]
    result["path_minus_bare"] = result["path"] - result["bare"]
    return result


def render(e2e: dict[str, Any], cost: dict[str, float], args: argparse.Namespace) -> str:
    rows = [
        [
            VARIANTS[n].label,
            e2e["rps"][n],
            e2e["ratio_to_bare"][n],
            e2e["ratio_to_passthrough"][n],
            e2e["cpu_us"][n],
            e2e["added_cpu_us_vs_bare"][n],
            e2e["added_cpu_us_vs_passthrough"][n],
        ]
        for n in NAMES
    ]
    e2e_table = table(
        [
            "variant",
            "req/s",
            "vs bare",
            "vs pass-through",
            "client CPU µs/req",
            "added CPU µs vs bare",
            "added CPU µs vs pass-through",
        ],
        rows,
    )
    cost_table = table(
        ["path", "µs per call", "added µs vs bare await"],
        [
            ["bare `await attempt()`", cost["bare"], 0.0],
            ["`Seawall.run()`", cost["run"], cost["run_minus_bare"]],
            ["middleware side: resolve + CallSpec + run", cost["path"], cost["path_minus_bare"]],
        ],
    )
    ratio = e2e["ratio_to_passthrough"]["seawall"]
    return "\n\n".join(
        [
            f"### Success-path overhead (issue 2): {args.concurrency} concurrent requests to "
            f"a loopback {SERVERS[args.server]} in its own process, {args.rounds} interleaved "
            f"rounds x {args.requests} requests, medians",
            e2e_table,
            f"seawall vs pass-through: {ratio:.3f} (target >= 0.95: "
            f"{'met' if ratio >= 0.95 else 'NOT met'}).",
            f"### Pure decision cost, no network ({args.rounds} rounds x {args.calls} calls, "
            "medians)",
            cost_table,
            f"`Seawall.run()` adds {cost['run_minus_bare']:.2f} µs per call (target < 10 µs: "
            f"{'met' if cost['run_minus_bare'] < 10 else 'NOT met'}).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument(
        "--server",
        choices=["aiohttp", "raw"],
        default="aiohttp",
        help="the upstream: an aiohttp server, or a minimal asyncio one (the client is then "
        "the bottleneck: a worst case for any client-side overhead)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny run: proves it works")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.requests, args.calls = 1, 200, 500
    e2e = asyncio.run(end_to_end(args.rounds, args.requests, args.concurrency, args.server))
    cost = asyncio.run(decision_cost(args.rounds, args.calls))
    result = {"scenario": "overhead", "end_to_end": e2e, "decision_cost": cost}
    result["markdown"] = render(e2e, cost, args)
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
