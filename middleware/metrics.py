"""Counters kept by the engine, with no dependency: per key, cheap to update."""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["KeyStats"]


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
            "success_rate": (self.successes / finished) if finished else None,
            "average_latency": (self.latency_sum / self.latency_count)
            if self.latency_count
            else None,
        }
