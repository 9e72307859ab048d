"""seawall against the peers a user would otherwise pick, in four scenarios.

Variants (see ``_common.VARIANTS``): bare aiohttp, a pass-through middleware,
the cookbook retry middleware, aiohttp-retry, tenacity, stamina, purgatory +
tenacity, seawall; each with 3 retries, exponential backoff from 0.1 s capped
at 2 s, breakers at 5 failures / 2 s recovery.

Scenarios (``--scenario``, default all), each variant interleaved in rounds
(the order alternates between rounds), medians over rounds:

- ``success``: closed loop, 64 concurrent requests, throughput vs bare aiohttp
  (the median of per-round ratios).
- ``outage``: open loop at ``--rate`` logical requests/s; steady, a 5 s outage
  (every call answered 503), recovery. Upstream calls during the outage and
  the post-recovery peak (per 100 ms) relative to steady state, time to the
  first and to sustained success after recovery, success of the requests
  started after recovery and once recovered. seawall also runs as the classic
  breaker (``hold=0``, ``probe_share=0``) and in the adaptive mode (SRE
  throttling, k=2) side by side.
- ``ratelimit``: open loop against a token bucket (429 with ``Retry-After``
  and ``retry-after-ms`` beyond it): 429s per success.
- ``errors``: open loop, 30 % random 500s: success rate, amplification
  (upstream calls per logical request), breaker trips.

    python benchmarks/peers.py [--scenario outage] [--variants seawall,tenacity] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from typing import Any

from _common import (
    BUCKET,
    RECOVERY,
    VARIANTS,
    Logical,
    Upstream,
    Variant,
    _seawall_stats,
    _seawall_with,
    buckets_total,
    closed_loop,
    emit,
    in_range,
    median,
    run_variant_open,
    seawall_policy,
    table,
)

SCENARIOS = ["success", "outage", "ratelimit", "errors"]


def _seawall_breaker(**changes: Any) -> Any:
    def policy() -> Any:
        import attrs

        base = seawall_policy()
        return attrs.evolve(base, breaker=attrs.evolve(base.breaker, **changes))

    return policy


#: seawall's breaker modes side by side in the outage scenario (run with ``seawall``).
BREAKER_MODES = {
    v.name: v
    for v in [
        Variant(
            "seawall_classic",
            "seawall, classic breaker (hold=0, probe_share=0)",
            _seawall_with(_seawall_breaker(hold=0.0, probe_share=0.0)),
            _seawall_stats,
        ),
        Variant(
            "seawall_adaptive",
            "seawall, adaptive mode (SRE throttling, k=2)",
            _seawall_with(_seawall_breaker(mode="adaptive", k=2.0)),
            _seawall_stats,
        ),
    ]
}


class Settings:
    """Sizes of every scenario; ``quick`` only proves that everything runs."""

    def __init__(self, quick: bool, rate: float) -> None:
        self.rate = rate
        self.success_rounds, self.success_requests = (1, 64) if quick else (5, 2000)
        self.outage_rounds = 1 if quick else 2
        # steady, outage, after recovery (seconds)
        self.steady, self.outage, self.after = (0.4, 0.6, 0.6) if quick else (2.0, 5.0, 3.5)
        self.fault_rounds = 1 if quick else 2
        self.fault_seconds = 0.5 if quick else 3.0
        self.limit_rate = rate * 0.75  # the token bucket refills at 75 % of the arrival rate
        self.limit_burst = max(2.0, self.limit_rate / 10)
        self.error_rate = 0.3


def _orders(names: list[str], rounds: int) -> list[list[str]]:
    return [names if r % 2 == 0 else names[::-1] for r in range(rounds)]


# --- a. success path ------------------------------------------------------------------------


async def success(names: list[str], s: Settings, up: Upstream) -> dict[str, Any]:
    rps: dict[str, list[float]] = {n: [] for n in names}
    for order in _orders(names, s.success_rounds):
        for name in order:
            async with VARIANTS[name].open() as fetch:
                await closed_loop(fetch, up.url, 64, 64)  # warm the pool
                run = await closed_loop(fetch, up.url, s.success_requests, 64)
            rps[name].append(run["requests"] / run["wall"])
    med = {n: median(rps[n]) for n in names}
    bare = rps.get("bare")
    # The median of per-round ratios: each round's bare run is the yardstick, so
    # drift between rounds on a shared machine cancels out.
    rows = {
        n: {
            "rps": med[n],
            "vs_bare": median([a / b for a, b in zip(rps[n], bare, strict=True)])
            if bare
            else math.nan,
        }
        for n in names
    }
    return {
        "rows": rows,
        "markdown": table(
            ["variant", "req/s", "throughput vs bare"],
            [[VARIANTS[n].label, rows[n]["rps"], rows[n]["vs_bare"]] for n in names],
        ),
    }


# --- b. outage ------------------------------------------------------------------------------


def _outage_metrics(
    records: list[Logical], counts: dict[int, dict[int, int]], s: Settings
) -> dict[str, float]:
    calls = buckets_total(counts)
    ok_calls = buckets_total(counts, [200])
    down_at, up_at = s.steady, s.steady + s.outage
    end = up_at + s.after
    steady = in_range(calls, min(0.5, s.steady / 2), down_at)
    # nan, not a division by zero, when a loaded machine put no call in the steady bins
    steady_mean = sum(steady) / len(steady) if sum(steady) else math.nan
    during = in_range(calls, down_at, up_at)
    after = in_range(calls, up_at, end)
    firsts = [r.end for r in records if r.ok and r.end >= up_at]
    first = min(firsts) - up_at if firsts else math.inf
    sustained = math.inf
    later = sorted((r for r in records if r.start >= up_at), key=lambda r: r.start)
    oks = [r.ok for r in later]
    for index in range(round(s.after / BUCKET)):  # bounded: one step per bucket
        at = up_at + index * BUCKET
        tail = [ok for r, ok in zip(later, oks, strict=True) if r.start >= at]
        if tail and sum(tail) / len(tail) >= 0.99:
            sustained = at - up_at
            break
    recovered = [r for r in records if r.start >= up_at + RECOVERY]
    started_after = [r for r in records if r.start >= up_at]
    first_upstream_ok = min(
        (i for i, n in ok_calls.items() if i * BUCKET >= up_at and n), default=None
    )
    return {
        "steady_per_100ms": steady_mean,
        "outage_load": (sum(during) / len(during)) / steady_mean if during else math.nan,
        "first_success_s": first,
        "first_upstream_200_s": (
            first_upstream_ok * BUCKET - up_at if first_upstream_ok is not None else math.inf
        ),
        "sustained_success_s": sustained,
        "peak_after": max(after) / steady_mean if after else math.nan,
        # The host's own arrival jitter: the busiest steady bin, on the same scale.
        "peak_steady": max(steady) / steady_mean if steady else math.nan,
        "success_once_recovered": (
            sum(r.ok for r in recovered) / len(recovered) if recovered else math.nan
        ),
        "success_after_recovery": (
            sum(r.ok for r in started_after) / len(started_after) if started_after else math.nan
        ),
    }


async def outage(names: list[str], s: Settings, up: Upstream) -> dict[str, Any]:
    phases = [(s.steady, "ok"), (s.outage, "down"), (s.after, "ok")]
    if "seawall" in names:
        names = names + [n for n in BREAKER_MODES if n not in names]
    variants = {**VARIANTS, **BREAKER_MODES}
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r, order in enumerate(_orders(names, s.outage_rounds)):
        for name in order:
            records, counts, extra = await run_variant_open(
                variants[name], up, phases, rate=s.rate, seed=r
            )
            metrics = _outage_metrics(records, counts, s)
            metrics["trips"] = float(extra.get("trips", math.nan))
            runs[name].append(metrics)
    keys = [
        "outage_load",
        "first_success_s",
        "sustained_success_s",
        "peak_after",
        "peak_steady",
        "success_after_recovery",
        "success_once_recovered",
        "steady_per_100ms",
    ]
    rows = {n: {k: median([m[k] for m in runs[n]]) for k in keys} for n in names}
    return {
        "rows": rows,
        "markdown": table(
            [
                "variant",
                "calls during outage vs steady",
                "first success after recovery (s)",
                "sustained (>= 99 %) success after (s)",
                "peak 100 ms load after recovery vs steady",
                "success of requests started after recovery",
                "success once recovered",
            ],
            [
                [
                    variants[n].label,
                    rows[n]["outage_load"],
                    rows[n]["first_success_s"],
                    rows[n]["sustained_success_s"],
                    rows[n]["peak_after"],
                    f"{rows[n]['success_after_recovery']:.1%}",
                    f"{rows[n]['success_once_recovered']:.1%}",
                ]
                for n in names
            ],
        ),
    }


# --- c. rate limit, d. random errors ----------------------------------------------------------


def _fault_metrics(
    records: list[Logical], counts: dict[int, dict[int, int]], extra: dict[str, Any]
) -> dict[str, float]:
    upstream = sum(sum(b.values()) for b in counts.values())
    ok = sum(counts.get(200, {}).values())
    limited = sum(counts.get(429, {}).values())
    logical = len(records)
    return {
        "success": sum(r.ok for r in records) / logical if logical else math.nan,
        "amplification": upstream / logical if logical else math.nan,
        "429_per_success": limited / ok if ok else math.inf,
        "trips": float(extra["trips"]) if "trips" in extra else math.nan,
    }


async def _faults(
    names: list[str], s: Settings, up: Upstream, phase: tuple[Any, ...]
) -> dict[str, dict[str, float]]:
    # The fault lasts well past the arrivals, so late retries meet it too.
    phases = [(s.fault_seconds, *phase), (6.0, *phase)]
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r, order in enumerate(_orders(names, s.fault_rounds)):
        for name in order:
            records, counts, extra = await run_variant_open(
                VARIANTS[name], up, phases, rate=s.rate, seed=100 + r, duration=s.fault_seconds
            )
            runs[name].append(_fault_metrics(records, counts, extra))
    keys = ["success", "amplification", "429_per_success", "trips"]
    return {n: {k: median([m[k] for m in runs[n]]) for k in keys} for n in names}


async def ratelimit(names: list[str], s: Settings, up: Upstream) -> dict[str, Any]:
    rows = await _faults(names, s, up, ("ratelimit", s.limit_rate, s.limit_burst))
    return {
        "rows": rows,
        "markdown": table(
            ["variant", "429s per success", "success rate", "upstream calls per request"],
            [
                [
                    VARIANTS[n].label,
                    rows[n]["429_per_success"],
                    f"{rows[n]['success']:.1%}",
                    rows[n]["amplification"],
                ]
                for n in names
            ],
        ),
    }


async def errors(names: list[str], s: Settings, up: Upstream) -> dict[str, Any]:
    rows = await _faults(names, s, up, ("errors", s.error_rate))
    return {
        "rows": rows,
        "markdown": table(
            ["variant", "success rate", "upstream calls per request", "breaker trips"],
            [
                [
                    VARIANTS[n].label,
                    f"{rows[n]['success']:.1%}",
                    rows[n]["amplification"],
                    rows[n]["trips"],
                ]
                for n in names
            ],
        ),
    }


RUNNERS = {"success": success, "outage": outage, "ratelimit": ratelimit, "errors": errors}

TITLES = {
    "success": "a. Success path: 64 concurrent requests, closed loop",
    "outage": "b. A 5 s outage under open-loop load",
    "ratelimit": "c. A rate-limited upstream (token bucket, 429 + Retry-After beyond)",
    "errors": "d. 30 % random 500s",
}


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """seawall's targets: (target, measured, met?)."""
    out: list[tuple[str, str, bool | None]] = []

    def row(scenario: str) -> dict[str, float] | None:
        rows = results.get(scenario, {}).get("rows", {})
        return rows.get("seawall")

    if (r := row("success")) is not None:
        out.append(
            ("success-path throughput >= 0.95 of bare", f"{r['vs_bare']:.3f}", r["vs_bare"] >= 0.95)
        )
    if (r := row("outage")) is not None:
        out.append(
            (
                "calls on a dead upstream <= 0.05 of steady",
                f"{r['outage_load']:.3f}",
                r["outage_load"] <= 0.05,
            )
        )
        out.append(
            (
                "first success <= 0.5 s after recovery",
                f"{r['first_success_s']:.2f} s",
                r["first_success_s"] <= 0.5,
            )
        )
        out.append(
            (
                ">= 99 % success of requests started after recovery",
                f"{r['success_after_recovery']:.1%}",
                r["success_after_recovery"] >= 0.99,
            )
        )
        out.append(
            (
                ">= 99 % success once recovered",
                f"{r['success_once_recovered']:.1%}",
                r["success_once_recovered"] >= 0.99,
            )
        )
        out.append(
            ("post-recovery peak <= 1.2x steady", f"{r['peak_after']:.2f}", r["peak_after"] <= 1.2)
        )
    if (r := row("errors")) is not None:
        out.append(("30 % 500s: >= 99 % success", f"{r['success']:.1%}", r["success"] >= 0.99))
        out.append(
            (
                "30 % 500s: <= 1.45 upstream calls per request",
                f"{r['amplification']:.3f}",
                r["amplification"] <= 1.45,
            )
        )
        out.append(("30 % 500s: no breaker trip", f"{r['trips']:g}", r["trips"] == 0))
    return out


async def run_all(scenarios: list[str], names: list[str], s: Settings) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with Upstream() as up:
        for scenario in scenarios:
            results[scenario] = await RUNNERS[scenario](names, s, up)
    return results


def render(results: dict[str, Any], s: Settings) -> str:
    parts = []
    for scenario, result in results.items():
        parts.append(f"### {TITLES[scenario]}")
        parts.append(result["markdown"])
    met = targets(results)
    if met:
        parts.append("### seawall's targets")
        parts.append(
            table(
                ["target", "seawall (median)", "met"],
                [[t, v, "yes" if ok else "NO"] for t, v, ok in met],
            )
        )
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    parser.add_argument("--rate", type=float, default=200.0, help="logical requests per second")
    parser.add_argument("--quick", action="store_true", help="tiny run: proves it works")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    s = Settings(args.quick, args.rate if not args.quick else min(args.rate, 100.0))
    results = asyncio.run(run_all(args.scenario or SCENARIOS, names, s))
    out = {"scenario": "peers", "results": {k: v["rows"] for k, v in results.items()}}
    out["targets"] = [{"target": t, "seawall": v, "met": ok} for t, v, ok in targets(results)]
    out["markdown"] = render(results, s)
    emit(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
