"""Backoff maths: exponential, decorrelated, constant, linear, and the jitter.

Each computes a ceiling that never exceeds ``policy.max_delay`` and draws
the delay from the jitter's range (``bounds``). Full and equal jitter stay
below the ceiling; proportional jitter (±``jitter_factor``) may go above it,
but its range is cut at ``max_delay``, so no jitter pushes a delay past the cap.
"""

from __future__ import annotations

import random

from seawall.policy import RetryPolicy

__all__ = ["bounds", "ceiling", "delay", "jittered", "seed"]

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


def bounds(raw: float, policy: RetryPolicy) -> tuple[float, float]:
    """The range the jitter draws from around the ceiling ``raw``, within ``max_delay``.

    Decorrelated backoff draws from [base, raw] whatever ``jitter`` says.
    """
    if policy.backoff == "decorrelated":
        return min(policy.base_delay, raw), raw
    jitter = policy.jitter
    if jitter == "full":
        return 0.0, raw
    if jitter == "equal":
        return raw / 2.0, raw
    if jitter == "proportional":
        factor = policy.proportion
        return raw * (1.0 - factor), min(policy.max_delay, raw * (1.0 + factor))
    return raw, raw


def jittered(raw: float, policy: RetryPolicy) -> float:
    """``raw`` with the policy's jitter: uniform within ``bounds(raw, policy)``."""
    if policy.jitter == "none" and policy.backoff != "decorrelated":
        return raw
    low, high = bounds(raw, policy)
    return _rng.uniform(low, high)


def delay(attempt: int, policy: RetryPolicy) -> float:
    """Seconds to wait after failed attempt ``attempt``: the strategy, jittered, capped."""
    return min(policy.max_delay, jittered(ceiling(attempt, policy), policy))
