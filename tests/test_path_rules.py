"""The pure helpers of the attempt loop (``seawall._path.rules``), called directly."""

from __future__ import annotations

import math

import pytest

from seawall._path.rules import deadline_at, is_delay


@pytest.mark.parametrize("value", [0, 0.0, 1, 2.5, 1e6])
def test_finite_seconds_from_zero_up_are_a_delay(value: object) -> None:
    """A backoff plugin may answer any finite number of seconds >= 0, 0 included."""
    assert is_delay(value)


@pytest.mark.parametrize("value", [-0.001, -1, math.inf, math.nan, True, False, "1", None])
def test_anything_else_is_not_a_delay(value: object) -> None:
    """Negative, infinite, NaN, booleans, strings and None fall back to the built-in backoff."""
    assert not is_delay(value)


def test_the_deadline_is_the_sooner_of_the_policy_and_the_inbound_one() -> None:
    """The inbound deadline (on time.monotonic()) is moved onto the loop's clock first."""
    # Loop clock at 1000, monotonic at 100: an inbound deadline at 103 is 1003 here.
    assert deadline_at(5.0, 103.0, now=1000.0, monotonic=100.0) == 1003.0
    assert deadline_at(2.0, 103.0, now=1000.0, monotonic=100.0) == 1002.0
    assert deadline_at(None, 103.0, now=1000.0, monotonic=100.0) == 1003.0
    assert deadline_at(5.0, None, now=1000.0, monotonic=100.0) == 1005.0
    assert deadline_at(None, None, now=1000.0, monotonic=100.0) is None
