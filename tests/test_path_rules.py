"""The pure helpers of the attempt loop (``seawall._path.rules``), called directly."""

from __future__ import annotations

import math

import pytest

import seawall
from seawall._path.rules import deadline_at, is_delay, next_delay
from seawall.outcome import Category, Classification
from seawall.policy import RetryPolicy


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


def test_previous_failures_that_are_not_a_count_are_ignored() -> None:
    """A ``previous_failures`` that is not an int counts as none: only this call's add up."""
    retry = RetryPolicy(max_delay=10.0)
    c = Classification(category=Category.SERVER, retryable=True)
    odd = {"previous_failures": "5"}
    assert next_delay(1.0, 2, c, retry, odd) == (1.0, "backoff")  # 2 failures: no doubling
    assert next_delay(1.0, 3, c, retry, odd) == (2.0, "backoff")  # 3: doubled
    assert next_delay(1.0, 1, c, retry, {"previous_failures": 2}) == (2.0, "backoff")


async def test_on_replaces_the_classification_but_not_the_safety_rules() -> None:
    """``on=`` retries what it names (even what seawall would not) and stops the rest at once."""
    policy = seawall.Policy(retry=seawall.RetryPolicy(max_attempts=3))
    sw = seawall.Seawall(policy, entrypoints=False)
    calls: list[str] = []

    async def fail(kind: type[Exception]) -> None:
        calls.append(kind.__name__)
        raise kind("no")

    with pytest.raises(KeyError):
        await sw.using(key="k1", on=ValueError).call(fail, KeyError)
    assert calls == ["KeyError"]
    calls.clear()
    with pytest.raises(ValueError, match="no"):
        await sw.using(key="k2", on=ValueError).call(fail, ValueError)
    assert calls == ["ValueError"] * 3
    await sw.aclose()
