"""The backoff maths (``seawall.backoff``): the shapes the docs promise, edges included."""

from __future__ import annotations

import pytest

from seawall import backoff
from seawall.policy import RetryPolicy


@pytest.fixture(autouse=True)
def _seeded() -> None:
    backoff.seed(20261201)


def test_decorrelated_ceiling_triples_per_attempt() -> None:
    """Decorrelated jitter draws from [base, base x 3^attempt]: it reaches the top, not past it."""
    retry = RetryPolicy(backoff="decorrelated", base_delay=0.1, max_delay=100.0)
    for attempt, top in ((1, 0.3), (2, 0.9), (3, 2.7), (4, 8.1)):
        samples = [backoff.delay(attempt, retry) for _ in range(400)]
        assert max(samples) <= top + 1e-9
        assert max(samples) > 0.95 * top
        assert min(samples) >= 0.1


def test_equal_jitter_spans_the_whole_upper_half() -> None:
    """Equal jitter draws from [raw/2, raw]: near raw/2 as well as near raw."""
    retry = RetryPolicy(jitter="equal", base_delay=0.4, max_delay=10.0)
    samples = [backoff.delay(1, retry) for _ in range(400)]
    assert all(0.2 <= s <= 0.4 for s in samples)
    assert min(samples) < 0.21
    assert max(samples) > 0.39


def test_proportional_jitter_spans_the_factor_on_both_sides() -> None:
    """``jitter="proportional"``: [raw (1 - f), raw (1 + f)], the upper end within the cap."""
    retry = RetryPolicy(jitter="proportional", jitter_factor=0.25, base_delay=8.0, max_delay=100.0)
    assert backoff.bounds(8.0, retry) == (6.0, 10.0)
    samples = [backoff.delay(1, retry) for _ in range(400)]
    assert all(6.0 <= s <= 10.0 for s in samples)
    assert min(samples) < 6.1
    assert max(samples) > 9.9  # above the ceiling: only proportional jitter goes there


def test_proportional_jitter_is_cut_at_max_delay() -> None:
    retry = RetryPolicy(jitter="proportional", jitter_factor=0.5, base_delay=8.0, max_delay=9.0)
    # the ceiling is 8: the range is [4, 9], its upper end 12 cut at the cap
    assert backoff.bounds(backoff.ceiling(1, retry), retry) == (4.0, 9.0)
    assert max(backoff.delay(1, retry) for _ in range(400)) <= 9.0


def test_proportional_jitter_without_a_factor_is_ten_percent() -> None:
    retry = RetryPolicy(jitter="proportional", base_delay=10.0, max_delay=100.0)
    low, high = backoff.bounds(10.0, retry)
    assert (low, high) == pytest.approx((9.0, 11.0))


def test_decorrelated_backoff_draws_even_with_jitter_none() -> None:
    """Decorrelated backoff is its own jitter: ``jitter="none"`` does not pin it to the top."""
    retry = RetryPolicy(backoff="decorrelated", jitter="none", base_delay=0.1, max_delay=100.0)
    samples = [backoff.delay(2, retry) for _ in range(100)]
    assert all(0.1 <= s <= 0.9 + 1e-9 for s in samples)
    assert min(samples) < 0.5


def test_other_jitters_stay_within_the_ceiling() -> None:
    for jitter, low in (("full", 0.0), ("equal", 2.0), ("none", 4.0)):
        retry = RetryPolicy(jitter=jitter, base_delay=4.0, max_delay=100.0)
        assert backoff.bounds(4.0, retry) == (low, 4.0), jitter
