"""Counters kept by the engine, with no dependency: per key, cheap to update."""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from seawall.breaker import BreakerState

if TYPE_CHECKING:
    from seawall.engine import Seawall

__all__ = ["KeyStats", "health_report"]


class KeyStats:
    """What happened to one key since the last reset."""

    __slots__ = (
        "attempts",
        "failures",
        "latency_count",
        "latency_sum",
        "rejections",
        "requests",
        "retries",
        "successes",
        "transitions",
        "waited",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.attempts = 0
        self.retries = 0
        self.successes = 0
        self.failures: Counter[str] = Counter()  # by category
        self.rejections: Counter[str] = Counter()  # by reason
        self.transitions: Counter[str] = Counter()  # "closed->open"
        self.latency_sum = 0.0
        self.latency_count = 0
        self.waited = 0.0  # seconds spent in backoff and cooldown waits

    def observe_call(self, elapsed: float, success: bool) -> None:
        if success:
            self.successes += 1
        self.latency_sum += elapsed
        self.latency_count += 1

    def snapshot(self) -> dict[str, Any]:
        finished = self.successes + sum(self.failures.values())
        return {
            "requests": self.requests,
            "attempts": self.attempts,
            "retries": self.retries,
            "successes": self.successes,
            "failures": dict(self.failures),
            "rejections": dict(self.rejections),
            "transitions": dict(self.transitions),
            "waited": self.waited,
            "success_rate": (self.successes / finished) if finished else None,
            "average_latency": (self.latency_sum / self.latency_count)
            if self.latency_count
            else None,
        }


def health_report(sw: Seawall) -> dict[str, Any]:
    """``sw.health()``: status by breaker states, with per-key detail.

    ``healthy``: every breaker closed; ``unhealthy``: every key's breaker
    open; ``degraded``: anything between.
    """
    keys: dict[str, Any] = {}
    states = []
    for key, state in sw._states.items():
        breaker = state.breaker
        states.append(breaker.state)
        keys[key] = {
            "state": breaker.state.value,
            "failure_rate": breaker.failure_rate,
            "consecutive_failures": breaker.consecutive_failures,
            "retry_after": breaker.retry_after(),
            "budget_balance": state.budget.balance(),
            "cooldown": state.cooldown.remaining(),
            **state.stats.snapshot(),
        }
    if not states or all(s is BreakerState.CLOSED for s in states):
        status = "healthy"
    elif all(s is BreakerState.OPEN for s in states):
        status = "unhealthy"
    else:
        status = "degraded"
    return {
        "status": status,
        "uptime": time.time() - sw.started,
        "keys": keys,
        "plugin_faults": {f"{p}.{h}": n for (p, h), n in sw.hooks.faults.items()},
        "escalation": dict(sw.escalator.stats),
    }
