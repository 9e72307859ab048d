"""The latency histogram remembers the last duration's bucket: every duration still
lands exactly where ``bisect_left`` over ``LATENCY_BUCKETS`` puts it."""

from __future__ import annotations

import math
import random
from bisect import bisect_left

import pytest

from seawall.stats import LATENCY_BUCKETS, KeyStats, LatencyHistogram

# Every bound, a hair either side of it, zero, negatives and the extremes: the edges
# where a remembered bucket could be off by one.
EDGES = [
    value
    for bound in LATENCY_BUCKETS
    for value in (bound, math.nextafter(bound, -math.inf), math.nextafter(bound, math.inf))
] + [0.0, -1.0, 1e-9, 59.999, 60.0, 61.0, 1e9, math.inf]


def _reference(durations: list[float]) -> list[int]:
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    for d in durations:
        counts[bisect_left(LATENCY_BUCKETS, d)] += 1
    return counts


@pytest.mark.parametrize("order", ["sorted", "reversed", "shuffled", "repeated"])
def test_observe_and_first_try_place_every_duration_as_bisect_does(order: str) -> None:
    durations = sorted(EDGES)
    if order == "reversed":
        durations.reverse()
    elif order == "shuffled":
        random.Random(16).shuffle(durations)
    elif order == "repeated":  # each twice in a row: the second hits the remembered bucket
        durations = [d for d in durations for _ in (0, 1)]
    histogram = LatencyHistogram()
    stats = KeyStats()
    for d in durations:
        histogram.observe(d)
        stats.first_try(d)
    expected = _reference(durations)
    assert histogram.counts == expected
    assert stats.latency.counts == expected
    assert stats.successes == stats.attempts == len(durations)


def test_a_duration_on_a_bound_counts_in_that_bound_s_bucket_after_one_below_it() -> None:
    histogram = LatencyHistogram()
    histogram.observe(0.004)  # (0.0025, 0.005]: remembered
    histogram.observe(0.005)  # the inclusive upper bound: the same bucket
    histogram.observe(0.0025)  # the exclusive lower bound: the bucket below
    assert histogram.counts[2] == 2
    assert histogram.counts[1] == 1
    assert sum(histogram.counts) == 3


def test_nan_lands_where_bisect_puts_it() -> None:
    histogram = LatencyHistogram()
    histogram.observe(0.3)
    histogram.observe(math.nan)
    assert histogram.counts == _reference([0.3, math.nan])
