"""The built-in backoff strategies, and plugins that choose the delay."""

from __future__ import annotations

import math
import random

import pytest

import seawall
from seawall.plugins.builtin import backoff
from seawall.policy import BACKOFFS, JITTERS

from ._helpers import Recorder, policy


@pytest.mark.parametrize("strategy", BACKOFFS)
@pytest.mark.parametrize("jitter", JITTERS)
def test_delay_never_exceeds_max_delay(strategy, jitter) -> None:
    """Thousands of samples of every strategy and jitter stay within [0, max_delay]."""
    retry = seawall.RetryPolicy(
        backoff=strategy, jitter=jitter, base_delay=0.3, multiplier=3.0, max_delay=2.5
    )
    samples = [
        backoff.seawall_backoff(attempt, retry) for attempt in range(1, 41) for _ in range(100)
    ]
    assert all(0.0 <= s <= 2.5 for s in samples)
    if strategy != "constant":
        assert max(samples) > 1.0  # growth reaches the cap region rather than avoiding it


@pytest.mark.parametrize("strategy", BACKOFFS)
def test_no_overflow_for_huge_attempt_numbers(strategy) -> None:
    """Attempt 10,000 gives the cap, not an OverflowError or inf."""
    retry = seawall.RetryPolicy(backoff=strategy, jitter="none", max_delay=20.0, multiplier=10.0)
    value = backoff.seawall_backoff(10_000, retry)
    assert math.isfinite(value)
    assert value <= 20.0


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("exponential", [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]),
        ("linear", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
        ("constant", [0.1] * 6),
    ],
)
def test_unjittered_shapes(strategy, expected) -> None:
    """Without jitter: exponential doubles, linear adds base, constant stays; all capped."""
    retry = seawall.RetryPolicy(backoff=strategy, jitter="none", base_delay=0.1, max_delay=1.0)
    got = [backoff.seawall_backoff(n, retry) for n in range(1, 7)]
    assert got == pytest.approx(expected)


def test_default_policy_is_exponential_full_jitter_capped_at_20() -> None:
    """The defaults: exponential from 0.1 s, times 2, cap 20 s, full jitter."""
    retry = seawall.RetryPolicy()
    assert (retry.backoff, retry.jitter, retry.base_delay, retry.multiplier, retry.max_delay) == (
        "exponential",
        "full",
        0.1,
        2.0,
        20.0,
    )
    samples = [backoff.seawall_backoff(3, retry) for _ in range(500)]
    assert all(0.0 <= s <= 0.4 for s in samples)
    assert min(samples) < 0.1 < max(samples)  # full jitter spreads over [0, 0.4]


def test_equal_jitter_keeps_half() -> None:
    """Equal jitter draws from [raw/2, raw]."""
    retry = seawall.RetryPolicy(jitter="equal", base_delay=1.0, max_delay=100.0)
    samples = [backoff.seawall_backoff(3, retry) for _ in range(500)]
    assert all(2.0 <= s <= 4.0 for s in samples)


def test_decorrelated_stays_between_base_and_ceiling() -> None:
    """Decorrelated jitter draws from [base, ceiling] and never below the base delay."""
    retry = seawall.RetryPolicy(backoff="decorrelated", base_delay=0.5, max_delay=30.0)
    for attempt in range(1, 8):
        ceiling = backoff.ceiling(attempt, retry)
        samples = [backoff.seawall_backoff(attempt, retry) for _ in range(200)]
        assert all(0.5 <= s <= ceiling for s in samples)


class Fixed:
    """A backoff plugin answering ``value`` (whatever it is)."""

    def __init__(self, value: object) -> None:
        self.value = value

    @seawall.hookimpl
    def seawall_backoff(self) -> object:
        return self.value


async def _delays(plugin: object, **retry: object) -> tuple[list[float], seawall.Seawall]:
    rec = Recorder()
    sw = seawall.Seawall(policy(**retry), entrypoints=False, plugins=[plugin, rec])

    async def down() -> None:
        raise ConnectionResetError("connection reset")

    with pytest.raises(ConnectionResetError):
        await sw.call(down, key="backoff")
    return [d for d, _ in rec.delays()], sw


async def test_a_plugin_backoff_wins() -> None:
    """A user plugin's delay is used instead of the built-in strategy."""
    delays, sw = await _delays(Fixed(0.75), max_attempts=3)
    assert delays == [0.75, 0.75]
    assert sw.health()["plugin_faults"] == {}


async def test_a_plugin_delay_above_max_delay_is_capped() -> None:
    """A plugin cannot make seawall wait longer than max_delay."""
    delays, _ = await _delays(Fixed(500.0), max_attempts=2, max_delay=3.0)
    assert delays == [3.0]


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "3", True, [1]])
async def test_invalid_plugin_values_fall_back_to_the_builtin(bad) -> None:
    """A negative, NaN, infinite or non-number delay is a plugin fault; the built-in answers."""
    delays, sw = await _delays(
        Fixed(bad), max_attempts=3, backoff="constant", jitter="none", base_delay=0.2
    )
    assert delays == [0.2, 0.2]
    faults = sw.health()["plugin_faults"]
    assert len(faults) == 1
    [(name, count)] = faults.items()
    assert name.endswith(".seawall_backoff")
    assert count == 2


async def test_a_plugin_returning_none_defers() -> None:
    """None is not a fault: the next implementation (the built-in) decides."""
    delays, sw = await _delays(
        Fixed(None), max_attempts=2, backoff="constant", jitter="none", base_delay=0.2
    )
    assert delays == [0.2]
    assert sw.health()["plugin_faults"] == {}


def test_jitter_is_random_not_constant() -> None:
    """Full jitter gives different values (a fleet does not retry in step)."""
    retry = seawall.RetryPolicy(base_delay=1.0, max_delay=10.0)
    random.seed(1)
    assert len({backoff.seawall_backoff(4, retry) for _ in range(50)}) > 40
