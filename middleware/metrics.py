"""``sw.health()``: status by breaker states, totals, and per-key detail.

Types: ``seawall.reports``. The counters themselves are ``seawall.stats``
(re-exported here, their old home).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from seawall.breaker import BreakerState
from seawall.reports import HealthReport, KeyHealth
from seawall.stats import LATENCY_BUCKETS, KeyStats, LatencyHistogram, totals

if TYPE_CHECKING:
    from seawall.state import KeyState

__all__ = ["LATENCY_BUCKETS", "KeyStats", "LatencyHistogram", "health_report"]


def _status(states: Sequence[BreakerState]) -> str:
    if not states or all(s is BreakerState.CLOSED for s in states):
        return "healthy"
    if all(s is BreakerState.OPEN for s in states):
        return "unhealthy"
    return "degraded"


def _on_wall_clock(at: float | None, now: float, wall: float) -> float | None:
    """``at`` (read on the monotonic clock that reads ``now``) as a Unix time."""
    return None if at is None else wall - max(0.0, now - at)


def health_report(
    by_key: Mapping[str, KeyState],
    *,
    started: float,
    faults: Mapping[tuple[str, str], int],
    escalation: Mapping[str, int],
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    state: str = "local",
) -> HealthReport:
    """``sw.health()``: status by breaker states, totals, and per-key detail.

    ``status`` is ``healthy`` when every breaker is closed (or no key was
    called yet), ``unhealthy`` when every key's breaker is open, and
    ``degraded`` for anything between (some open or half-open; an open breaker
    already due a probe counts as half-open). Totals and
    each key carry counters, ``success_rate`` (successes among finished
    calls, ``None`` before any) and average, p50, p95, p99 and max latency in
    seconds, estimated from the histogram's buckets. ``state`` says where
    per-key state lives (``StateStore.mode``: ``local``, ``shared``, ``local-fallback``).

    ``last_failure`` of a key is a wall-clock (Unix) time: the counters keep
    ``clock``'s reading (the ``Seawall``'s monotonic clock, injectable), and
    it is placed on ``wall_clock``'s time line as it was that long ago.
    """
    now, wall = clock(), wall_clock()
    keys: dict[str, KeyHealth] = {}
    states = []
    for key, kept in by_key.items():
        breaker = kept.breaker
        # An open breaker already due a probe lets the next call through: it counts
        # as half-open, or a readiness probe would keep traffic (and so the probe
        # that closes it) away for good.
        due = breaker.state is BreakerState.OPEN and not breaker.is_open()
        states.append(BreakerState.HALF_OPEN if due else breaker.state)
        keys[key] = KeyHealth(
            state=breaker.state.value,
            failure_rate=breaker.failure_rate,
            consecutive_failures=breaker.consecutive_failures,
            retry_after=breaker.retry_after(),
            budget_balance=kept.budget.balance(),
            cooldown=kept.cooldown.remaining(),
            last_failure=_on_wall_clock(kept.stats.last_failure, now, wall),
            held=breaker.held,
            **kept.stats.snapshot(),
        )
    return HealthReport(
        status=_status(states),
        uptime=time.time() - started,
        breakers={s.value: sum(1 for x in states if x is s) for s in BreakerState},
        **totals(kept.stats for kept in by_key.values()),
        by_key=keys,
        plugin_faults={f"{p}.{h}": n for (p, h), n in faults.items()},
        escalation=dict(escalation),
        state=state,
    )
