"""The adaptive mode: SRE client-side throttling, on the test clock and through aiohttp."""

from __future__ import annotations

import random

import pytest

import seawall
from seawall.breaker import CLOSED_PERMIT, Breaker, BreakerState

from .conftest import status
from .test_breaker import Clock


class Fixed(random.Random):
    """A "random" source that always draws ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def _adaptive(clock: Clock, draw: float, **settings: object) -> Breaker:
    policy = seawall.BreakerPolicy(mode="adaptive", **settings)  # type: ignore[arg-type]
    return Breaker("k", policy, clock, rng=Fixed(draw))


def _verdicts(breaker: Breaker, accepted: int, failed: int) -> None:
    for _ in range(accepted):
        breaker.succeeded()
    for _ in range(failed):
        breaker.record(CLOSED_PERMIT, failure=True)


@pytest.mark.parametrize(("draw", "refused"), [(0.54, True), (0.55, False)])
def test_refuses_with_the_sre_probability(draw: float, refused: bool) -> None:
    """10 requests, 2 accepted, k=2: p = (10 - 2*2) / (10 + 1) = 0.545."""
    breaker = _adaptive(Clock(), draw, k=2.0)
    _verdicts(breaker, accepted=2, failed=8)
    assert (breaker.admit() is None) is refused


def test_local_refusals_count_as_requests() -> None:
    breaker = _adaptive(Clock(), 0.56, k=2.0)
    _verdicts(breaker, accepted=2, failed=8)
    assert breaker.admit() is not None  # p = 6/11 = 0.545 < 0.56
    breaker = _adaptive(Clock(), 0.5, k=2.0)
    _verdicts(breaker, accepted=2, failed=8)
    assert breaker.admit() is None  # counted: p = 7/12 = 0.583
    breaker._rng = Fixed(0.57)  # between 0.545 and 0.583
    assert breaker.admit() is None


def test_healthy_traffic_is_never_refused() -> None:
    breaker = _adaptive(Clock(), 0.0, k=2.0)
    _verdicts(breaker, accepted=10, failed=10)  # 20 - 2*10 = 0
    assert breaker.admit() is not None


def test_the_window_forgets_old_verdicts() -> None:
    clock = Clock()
    breaker = _adaptive(clock, 0.6, k=2.0, throttle_window=10.0)
    _verdicts(breaker, accepted=0, failed=50)
    assert breaker.admit() is None  # p = 50/51
    clock.advance(5.0)
    assert breaker.admit() is None  # p = 51/52; this refusal counts as a request
    clock.advance(5.1)  # the failures left the window, that refusal did not: p = 1/2
    assert breaker.admit() is not None


def test_the_adaptive_mode_never_opens() -> None:
    breaker = _adaptive(Clock(), 1.0, failure_threshold=1, minimum_calls=1)
    _verdicts(breaker, accepted=0, failed=100)
    breaker.call_failed()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.verdict_in() is None  # nothing to hold for: refusals fail at once


def test_k_below_one_is_refused_with_advice() -> None:
    with pytest.raises(ValueError, match=r"BreakerPolicy\.k"):
        seawall.BreakerPolicy(mode="adaptive", k=0.5)
    with pytest.raises(ValueError, match="classic"):
        seawall.BreakerPolicy(mode="sre")


async def test_a_failing_upstream_is_throttled_through_the_middleware(
    upstream, make_session
) -> None:
    """Every attempt asks the breaker (no lean path); refusals cost no upstream call."""
    up, server = upstream
    up.default = status(500)
    seawall.breaker.seed(11)
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(mode="adaptive", k=2.0),
    )
    sw = seawall.Seawall(policy, clock=Clock(), entrypoints=False)
    refused = 0
    async with make_session(sw) as session:
        for _ in range(40):
            try:
                async with session.get(server.make_url("/")) as resp:
                    assert resp.status == 500
            except seawall.CircuitOpenError:
                refused += 1
    assert refused > 20
    assert up.hits == 40 - refused
