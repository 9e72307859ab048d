"""Success-path overhead: bare aiohttp, a pass-through middleware, seawall.

End to end: ``--concurrency`` concurrent requests to the loopback upstream
(its own process), the variants interleaved in ``--rounds`` rounds of
``--requests`` requests each; medians of throughput and of client CPU time per
request (``time.process_time``: this process only). Ratios and added CPU are
medians of per-round pairs (each variant against the one run next to it in the
same round), so drift between rounds cancels out.

Pure decision cost, without network (``CASES``): ``Seawall.run()`` around an
attempt that returns ``Attempt(value, 200, headers)`` at once, against a bare
``await attempt()``; the aiohttp middleware itself around a handler that
answers 200 at once (its lean path); ``sw.call(fn)``, ``sw.call(fn, key=...)``
and a ``@sw.protect`` wrapper around an async function that returns at once,
against a bare ``await fn()``. Medians of interleaved rounds, per call.
``--decision-only`` skips the end-to-end part.

    python benchmarks/overhead.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import sys
import time
from collections.abc import Callable, Coroutine
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

    def paired(
        values: dict[str, list[float]], base: str, op: Callable[[float, float], float]
    ) -> dict[str, float]:
        # Per round, against the variant run next to it; then the median. Drift
        # between rounds (a shared, noisy machine) cancels out of each pair.
        return {
            n: median([op(a, b) for a, b in zip(values[n], values[base], strict=True)])
            for n in NAMES
        }

    ratio, minus = operator.truediv, operator.sub
    return {
        "rps": med_rps,
        "cpu_us": med_cpu,
        "rounds_rps": rps,
        "rounds_cpu_us": cpu,
        "failures": failures,
        "ratio_to_bare": paired(rps, "bare", ratio),
        "ratio_to_passthrough": paired(rps, "passthrough", ratio),
        "added_cpu_us_vs_bare": paired(cpu, "bare", minus),
        "added_cpu_us_vs_passthrough": paired(cpu, "passthrough", minus),
    }


#: The decision-cost cases: name -> (label, the bare case it is measured against).
CASES: dict[str, tuple[str, str | None]] = {
    "bare": ("bare `await attempt()`", None),
    "run": ("`Seawall.run()`", "bare"),
    "path": ("the aiohttp middleware (`sw.middleware()`)", "bare"),
    "fn": ("bare `await fn()`", None),
    "call": ("`sw.call(fn)`", "fn"),
    "call_key": ('`sw.call(fn, key="k")`', "fn"),
    "protect": ("`@sw.protect`", "fn"),
}


async def decision_cases() -> tuple[dict[str, Callable[[int], Coroutine[Any, Any, None]]], Any]:
    """Each case as a coroutine function making ``n`` calls; and the ``Seawall`` to close.

    ``bare``/``run``/``path``: an attempt returning ``Attempt(value, 200,
    headers)`` at once, through ``Seawall.run()``, and the middleware around a
    handler that answers 200 at once. ``fn``/``call``/``call_key``/``protect``:
    an async function returning at once, awaited bare, through ``sw.call`` and
    through a ``@sw.protect`` wrapper. Shared with ``instructions.py``.
    """
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

    spec = CallSpec(
        key=key, policy=policy, state=state, method="GET", url=url, context={}, http=True
    )

    class Request:
        """What the middleware reads of an ``aiohttp.ClientRequest``."""

        def __init__(self) -> None:
            self.url = url
            self.loop = asyncio.get_running_loop()
            self.method = "GET"
            self.headers: dict[str, str] = {}
            self.body = None

    class Response:
        def __init__(self) -> None:
            self.status = 200
            self.headers = headers

    response = Response()

    async def handler(_request: Any) -> Any:
        return response

    middleware = sw.middleware()
    request = Request()

    async def fn() -> object:
        return value

    protected = sw.protect(fn)
    call = sw.call

    async def bare(n: int) -> None:
        for _ in range(n):
            await attempt(1)

    async def run(n: int) -> None:
        for _ in range(n):
            await sw.run(spec, attempt)

    async def path(n: int) -> None:
        for _ in range(n):
            await middleware(request, handler)

    async def bare_fn(n: int) -> None:
        for _ in range(n):
            await fn()

    async def call_fn(n: int) -> None:
        for _ in range(n):
            await call(fn)

    async def call_key(n: int) -> None:
        for _ in range(n):
            await call(fn, key="k")

    async def protect(n: int) -> None:
        for _ in range(n):
            await protected()

    cases: dict[str, Callable[[int], Coroutine[Any, Any, None]]] = {
        "bare": bare,
        "run": run,
        "path": path,
        "fn": bare_fn,
        "call": call_fn,
        "call_key": call_key,
        "protect": protect,
    }
    for case in cases.values():  # the first call of each creates its key's state
        await case(1)
    return cases, sw


async def decision_cost(rounds: int, calls: int) -> dict[str, float]:
    """µs per call of each case in ``CASES``, medians of interleaved rounds."""
    cases, sw = await decision_cases()
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            t = time.perf_counter()
            await case(calls)
            timings[name].append((time.perf_counter() - t) / calls * 1e6)
    await sw.aclose()
    result = {name: median(values) for name, values in timings.items()}
    for name, (_label, base) in CASES.items():
        if base is not None:
            result[f"{name}_minus_{base}"] = result[name] - result[base]
    return result


def render(e2e: dict[str, Any] | None, cost: dict[str, float], args: argparse.Namespace) -> str:
    parts = [] if e2e is None else _render_e2e(e2e, args)
    cost_table = table(
        ["path", "µs per call", "added µs vs bare await"],
        [
            [label, cost[name], 0.0 if base is None else cost[f"{name}_minus_{base}"]]
            for name, (label, base) in CASES.items()
        ],
    )
    return "\n\n".join(
        [
            *parts,
            f"### Pure decision cost, no network ({args.rounds} rounds x {args.calls} calls, "
            "medians)",
            cost_table,
            f"`Seawall.run()` adds {cost['run_minus_bare']:.2f} µs per call (target < 10 µs: "
            f"{'met' if cost['run_minus_bare'] < 10 else 'NOT met'}); `sw.call()` adds "
            f"{cost['call_minus_fn']:.2f} µs to a bare `await fn()` (target <= 2 µs: "
            f"{'met' if cost['call_minus_fn'] <= 2 else 'NOT met'}).",
        ]
    )


def _render_e2e(e2e: dict[str, Any], args: argparse.Namespace) -> list[str]:
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
    ratio = e2e["ratio_to_passthrough"]["seawall"]
    return [
        f"### Success-path overhead (issue 2): {args.concurrency} concurrent requests to "
        f"a loopback {SERVERS[args.server]} in its own process, {args.rounds} interleaved "
        f"rounds x {args.requests} requests; req/s and CPU are medians, ratios and added "
        "CPU are medians of per-round pairs",
        e2e_table,
        f"seawall vs pass-through: {ratio:.3f} (target >= 0.95: "
        f"{'met' if ratio >= 0.95 else 'NOT met'}).",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=2000)
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
    parser.add_argument(
        "--decision-only", action="store_true", help="only the pure decision cost (seconds)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.requests, args.calls = 1, 200, 500
    cost = asyncio.run(decision_cost(args.rounds, args.calls))
    if args.decision_only:
        result: dict[str, Any] = {"scenario": "overhead", "decision_cost": cost}
        result["markdown"] = render(None, cost, args)
        emit(result, args.json)
        return 0
    e2e = asyncio.run(end_to_end(args.rounds, args.requests, args.concurrency, args.server))
    result = {"scenario": "overhead", "end_to_end": e2e, "decision_cost": cost}
    result["markdown"] = render(e2e, cost, args)
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
