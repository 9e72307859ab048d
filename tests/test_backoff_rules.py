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
