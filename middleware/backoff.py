"""Backoff maths: exponential, decorrelated, constant, linear, and the jitter.

Each computes a ceiling that never exceeds ``policy.max_delay`` and applies
the jitter below it, so jitter can never push a delay above the cap.
"""

from __future__ import annotations

import random

from seawall.policy import RetryPolicy

__all__ = ["ceiling", "delay", "jittered", "seed"]

_rng = random.Random()


def seed(value: int | None) -> None:
    """Seed the jitter's random numbers (the demo does, to be repeatable)."""
    _rng.seed(value)


def ceiling(attempt: int, policy: RetryPolicy) -> float:
    """The un-jittered delay after failed attempt number ``attempt`` (1-based)."""
    base, cap = policy.base_delay, policy.max_delay
    strategy = policy.backoff
    if strategy == "constant":
        raw = base
    elif strategy == "linear":
        raw = base * attempt
    elif strategy == "decorrelated":
        # Stateless decorrelated jitter: the ceiling triples per attempt, and the
        # delay is drawn from [base, ceiling] (see ``jittered``).
        raw = _grow(base, 3.0, attempt, cap)
    else:
        raw = _grow(base, policy.multiplier, attempt - 1, cap)
    return min(cap, raw)


def _grow(base: float, factor: float, power: int, cap: float) -> float:
    """``base * factor ** power``, but ``cap`` where that would overflow."""
    try:
        return base * factor**power
    except OverflowError:
        return cap


def jittered(raw: float, policy: RetryPolicy) -> float:
    """``raw`` with the policy's jitter; never above ``raw``."""
    if policy.backoff == "decorrelated":
        low = min(policy.base_delay, raw)
        return _rng.uniform(low, raw)
    if policy.jitter == "full":
        return _rng.uniform(0.0, raw)
    if policy.jitter == "equal":
        return raw / 2.0 + _rng.uniform(0.0, raw / 2.0)
    return raw


def delay(attempt: int, policy: RetryPolicy) -> float:
    """Seconds to wait after failed attempt ``attempt``: the strategy, jittered, capped."""
    return min(policy.max_delay, jittered(ceiling(attempt, policy), policy))
