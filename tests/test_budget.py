"""The retry budget: retries are a bounded share of requests, so outages are not amplified."""

from __future__ import annotations

import aiohttp
import pytest

import seawall
from seawall.budget import RetryBudget

from ._helpers import Recorder
from ._servers import closed_port
from .conftest import status


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def _sw(clock: Clock, recorder: Recorder | None = None, **budget: object) -> seawall.Seawall:
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=5),
        breaker=seawall.BreakerPolicy(enabled=False),
        budget=seawall.BudgetPolicy(**budget),  # type: ignore[arg-type]
    )
    return seawall.Seawall(
        policy, entrypoints=False, clock=clock, plugins=[recorder] if recorder else []
    )


async def test_sustained_failure_costs_about_one_plus_ratio(upstream, make_session) -> None:
    """500 requests to an upstream that always fails cost ~1.2 calls each, not max_attempts."""
    up, server = upstream
    up.default = status(503)
    sw = _sw(Clock(), ratio=0.2, min_retries_per_second=0.0)
    requests = 500
    async with make_session(sw) as session:
        for _ in range(requests):
            async with session.get(server.make_url("/")) as resp:
                assert resp.status == 503
    assert requests * 1.15 <= up.hits <= requests * 1.2 + 5
    [state] = sw.health()["keys"].values()
    assert state["rejections"]["budget"] >= requests * 0.75


def test_default_ratio_is_one_half() -> None:
    """The default ratio is 0.5: 30 % errors over four attempts need ~0.42 retries per request."""
    assert seawall.BudgetPolicy().ratio == 0.5
    assert seawall.Policy().budget.ratio == 0.5


@pytest.mark.parametrize("floor", [0.0, 5.0])
async def test_sustained_failure_with_the_default_ratio_costs_one_and_a_half(
    upstream, make_session, floor
) -> None:
    """With the default ratio and no breaker, a dead upstream costs ~1.5 calls per request."""
    up, server = upstream
    up.default = status(503)
    sw = _sw(Clock(), min_retries_per_second=floor)  # ratio: the default
    requests = 400
    async with make_session(sw) as session:
        for _ in range(requests):
            async with session.get(server.make_url("/")) as resp:
                assert resp.status == 503
    floor_tokens = floor * seawall.BudgetPolicy().window  # the clock stands still: never refilled
    assert requests * 1.45 + floor_tokens <= up.hits <= requests * 1.5 + floor_tokens + 1


async def test_floor_lets_a_quiet_key_retry(upstream, make_session) -> None:
    """min_retries_per_second * window tokens let the first failures retry in full."""
    up, server = upstream
    up.default = status(503)
    sw = _sw(Clock(), ratio=0.0, min_retries_per_second=0.4, window=10.0)  # 4 retries
    async with make_session(sw) as session:
        for _ in range(3):
            async with session.get(server.make_url("/")):
                pass
    assert up.hits == 5 + 1 + 1  # 4 retries on the first request, none afterwards


async def test_budget_refills_as_the_window_slides(upstream, make_session) -> None:
    """Retries spent more than `window` seconds ago are forgotten."""
    up, server = upstream
    up.default = status(503)
    clock = Clock()
    sw = _sw(clock, ratio=0.0, min_retries_per_second=0.1, window=10.0)  # 1 retry per window
    async with make_session(sw) as session:
        for _ in range(2):
            async with session.get(server.make_url("/")):
                pass
        assert up.hits == 3
        clock.now += 11.0
        async with session.get(server.make_url("/")):
            pass
    assert up.hits == 5


async def test_exhausted_budget_raises_through_the_middleware(make_session) -> None:
    """A connection failure the budget cannot retry raises RetryBudgetExhaustedError."""
    rec = Recorder()
    sw = _sw(Clock(), rec, ratio=0.0, min_retries_per_second=0.0)
    async with make_session(sw) as session:
        with pytest.raises(seawall.RetryBudgetExhaustedError) as info:
            await session.get(f"http://127.0.0.1:{closed_port()}/")
    error = info.value
    assert isinstance(error, aiohttp.ClientConnectionError)
    assert isinstance(error.__cause__, aiohttp.ClientConnectorError)
    assert len(error.attempts) == 1
    assert error.key in str(error)
    assert [e.kind for e in rec.events if e.kind in {"rejected", "budget"}] == [
        "rejected",
        "budget",
    ]


async def test_exhausted_budget_through_call_keeps_the_exception() -> None:
    """Through sw.call the original exception is raised, noting the budget stopped it."""
    sw = _sw(Clock(), ratio=0.0, min_retries_per_second=0.0)

    async def down() -> None:
        raise ConnectionResetError("connection reset")

    with pytest.raises(ConnectionResetError) as info:
        await sw.call(down, key="budget")
    assert "budget" in info.value.__notes__[-1]


def test_disabled_budget_always_allows() -> None:
    """enabled=False never refuses a retry."""
    budget = RetryBudget(seawall.BudgetPolicy(enabled=False, min_retries_per_second=0), Clock())
    assert all(budget.try_spend() for _ in range(1000))
