"""The demo's numbers, from what each upstream saw and how each request ended."""

from __future__ import annotations

from typing import Any

from seawall.cli.demo import DemoConfig, Variant, demo_policy
from seawall.cli.demo_upstream import Phase, phase_at, script

__all__ = [
    "BUCKET",
    "breaker_timeline",
    "calls_per_bucket",
    "report",
    "summarize",
    "waiting_per_bucket",
]

#: Width of the timeline's buckets, in seconds.
BUCKET = 0.1

#: Share of successes a window must reach to count as "sustained success".
SUSTAINED = 0.9


def _phase(phases: tuple[Phase, ...], name: str) -> Phase:
    return next(p for p in phases if p.name == name)


def calls_per_bucket(variant: Variant, duration: float) -> list[int]:
    """Upstream calls in each ``BUCKET`` of the run."""
    counts = [0] * (_bucket(duration) + 1)
    for t, _status, _started in variant.upstream.hits:
        index = _bucket(t)
        if 0 <= index < len(counts):
            counts[index] += 1
    return counts


def _bucket(t: float) -> int:
    return int(t / BUCKET + 1e-9)


def waiting_per_bucket(variant: Variant, duration: float) -> dict[str, list[int] | None]:
    """The most callers inside a call, and held by the breaker, in each ``BUCKET``.

    ``held`` is ``None`` when the breaker does not report held callers.
    """
    size = _bucket(duration) + 1
    inside = [0] * size
    held: list[int] | None = None
    for t, active, count in variant.waiting:
        index = _bucket(t)
        if not 0 <= index < size:
            continue
        inside[index] = max(inside[index], active)
        if count is not None:
            held = held or [0] * size
            held[index] = max(held[index], count)
    return {"inside": inside, "held": held}


def _peak(buckets: list[int], phase: Phase, steady: float) -> float | None:
    """The busiest ``BUCKET`` of ``phase`` against ``steady`` calls per bucket."""
    inside = buckets[_bucket(phase.start) : _bucket(phase.end)]
    return round(max(inside) / steady, 3) if inside and steady else None


def breaker_timeline(variant: Variant) -> list[tuple[float, str]]:
    """(time, state) steps, starting closed at 0."""
    return [(0.0, "closed"), *((t, new) for t, _old, new in variant.transitions)]


def _rate(successes: int, total: int) -> float | None:
    return round(successes / total, 4) if total else None


def _first_success(variant: Variant, after: float) -> float | None:
    ends = [end for _start, end, ok in variant.requests if ok and end >= after]
    return round(min(ends) - after, 3) if ends else None


def _sustained(variant: Variant, after: float, end: float, window: float) -> float | None:
    """Seconds from ``after`` to the first ``window`` where >= 90 % of ending calls succeeded."""
    finished = sorted((e, ok) for _s, e, ok in variant.requests if e >= after)
    steps = int((end - after) / BUCKET)
    for step in range(max(0, steps)):
        low = after + step * BUCKET
        inside = [ok for e, ok in finished if low <= e < low + window]
        if len(inside) >= 3 and sum(inside) / len(inside) >= SUSTAINED:
            return round(low - after, 3)
    return None


def summarize(variant: Variant, config: DemoConfig) -> dict[str, Any]:
    """Every number of the comparison table for one variant.

    Each phase measures one thing: success and load per phase, both over
    the logical requests started in it (a call counts where its request
    started: a retry or a held call sent after the phase ended still counts
    in that phase, not against the next one's requests); the calls the
    upstream saw *during* the outage (``outage_calls``) and the load peaks
    count by when the call was made: the peak after the outage in the
    recovered phase only, the peak after the rate limit in the phase after it.
    """
    phases = script(config.duration)
    hits = variant.upstream.hits
    outage = _phase(phases, "outage")
    healthy = _phase(phases, "healthy")
    limited = _phase(phases, "rate_limited")
    logical = len(variant.requests)
    successes = sum(ok for _s, _e, ok in variant.requests)
    by_phase: dict[str, list[int]] = {p.name: [0, 0, 0] for p in phases}  # ok, started, calls
    for start, _end, ok in variant.requests:
        phase = phase_at(phases, start)
        if phase is not None:
            by_phase[phase.name][0] += ok
            by_phase[phase.name][1] += 1
    for _t, _status, started in hits:
        phase = phase_at(phases, started)
        if phase is not None:
            by_phase[phase.name][2] += 1
    outage_calls = sum(1 for t, _status, _started in hits if t in outage)
    healthy_rate = sum(1 for t, _s, _b in hits if t in healthy) / (healthy.end - healthy.start)
    outage_rate = outage_calls / (outage.end - outage.start)
    limited_hits = [status for t, status, _started in hits if t in limited]
    buckets = calls_per_bucket(variant, config.duration)
    steady_bucket = healthy_rate * BUCKET
    window = max(0.3, config.duration / 20.0)
    waiting = waiting_per_bucket(variant, config.duration)
    held = waiting["held"]
    return {
        "logical_requests": logical,
        "successes": successes,
        "success_rate": _rate(successes, logical),
        "upstream_calls": len(hits),
        "amplification": round(len(hits) / logical, 3) if logical else None,
        "outage_calls": outage_calls,
        "outage_load_vs_steady": round(outage_rate / healthy_rate, 3) if healthy_rate else None,
        "success_rate_by_phase": {name: _rate(ok, n) for name, (ok, n, _c) in by_phase.items()},
        "load_by_phase": {
            name: round(calls / n, 3) if n else None for name, (_ok, n, calls) in by_phase.items()
        },
        "first_success_after_outage_s": _first_success(variant, outage.end),
        "sustained_success_after_outage_s": _sustained(
            variant, outage.end, config.duration, window
        ),
        "rate_limited_429s": limited_hits.count(429),
        "rate_limited_429s_per_success": (
            round(limited_hits.count(429) / limited_hits.count(200), 3)
            if limited_hits.count(200)
            else None
        ),
        "peak_load_after_outage_vs_steady": _peak(
            buckets, _phase(phases, "recovered"), steady_bucket
        ),
        "peak_load_after_rate_limit_vs_steady": _peak(
            buckets, _phase(phases, "unlimited"), steady_bucket
        ),
        "most_callers_waiting": max(waiting["inside"] or [0]),
        "most_callers_held": max(held) if held is not None else None,
        "loop_lag_max_s": round(variant.lag, 3),
        "breaker_transitions": [
            {"t": round(t, 3), "from": old, "to": new} for t, old, new in variant.transitions
        ],
    }


def report(variants: tuple[Variant, ...], config: DemoConfig) -> dict[str, Any]:
    """The whole result, as ``seawall demo --json`` prints it."""
    policy = demo_policy(config)
    return {
        "config": {
            "duration_s": config.duration,
            "clients": config.clients,
            "rate_per_client": config.rate,
            "seed": config.seed,
            "simulated_time": config.simulated,
            "naive_attempts": config.naive_attempts,
            "naive_delay_s": config.naive_delay,
            "seawall_recovery_timeout_s": policy.breaker.recovery_timeout,
            "seawall_max_attempts": policy.retry.max_attempts,
        },
        "phases": [
            {"name": p.name, "label": p.label, "start_s": p.start, "end_s": p.end}
            for p in script(config.duration)
        ],
        "variants": {v.name: summarize(v, config) for v in variants},
    }
