"""A retry the budget paid for but that never went (its call was cancelled in the wait,
or a thread interrupted in its sleep) gives its token back: callers that give up on their
own do not drain the key's retry budget for the callers that stay."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer

import seawall
from seawall.events import Event

from ._helpers import Clock
from .conftest import Upstream, status


def budget_policy() -> seawall.Policy:
    """Retries with a budget of 2 tokens (the floor), no breaker."""
    return seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=3),
        breaker=seawall.BreakerPolicy(enabled=False),
        budget=seawall.BudgetPolicy(ratio=0.5, min_retries_per_second=0.2, window=10),
    )


class Waiting:
    """Sets ``event`` when a call starts its wait before a retry (a ``retry`` event)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    @seawall.hookimpl
    def seawall_event(self, event: Event) -> None:
        if event.kind == "retry" and event.reason != "cooldown":
            self.event.set()


async def cancel_in_backoff(waiting: Waiting, task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` once it waits before a retry; fail if it ends without one."""
    waited = asyncio.ensure_future(waiting.event.wait())
    await asyncio.wait({waited, task}, return_when=asyncio.FIRST_COMPLETED)
    waited.cancel()
    assert not task.done(), "the call ended without a retry: the budget was empty"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    waiting.event.clear()


def retries_spent(sw: seawall.Seawall) -> int:
    (state,) = sw._states.values()
    return int(state.budget.counts()[1])


@pytest.fixture
def real_waits() -> Any:
    """Backoff waits that take their time (a task can be cancelled in one)."""
    seawall.testing.set_testing(False)
    yield
    seawall.testing.set_testing(True)


async def test_a_call_cancelled_in_its_backoff_gives_the_retry_back(real_waits: Any) -> None:
    waiting = Waiting()
    sw = seawall.Seawall(budget_policy(), entrypoints=False, plugins=[waiting])
    sent = 0

    async def fetch() -> None:
        nonlocal sent
        sent += 1
        raise ConnectionResetError("connection reset by peer")

    for _ in range(5):  # each fails once, then is cancelled in its backoff wait
        await cancel_in_backoff(waiting, asyncio.create_task(sw.call(fetch, key="upstream")))
    assert sent == 5  # no retry went
    assert retries_spent(sw) == 0  # before: 2 (the budget's floor), then every retry refused


async def test_an_httpx_request_cancelled_in_its_backoff_gives_the_retry_back(
    upstream: tuple[Upstream, TestServer], real_waits: Any
) -> None:
    up, server = upstream
    up.default = status(503)
    waiting = Waiting()
    sw = seawall.Seawall(budget_policy(), entrypoints=False, plugins=[waiting])
    async with httpx.AsyncClient(transport=sw.httpx_transport()) as http:
        for _ in range(3):
            request = asyncio.create_task(http.get(str(server.make_url("/"))))
            await cancel_in_backoff(waiting, request)
    assert up.hits == 3
    assert retries_spent(sw) == 0


def test_a_thread_interrupted_in_its_backoff_gives_the_retry_back() -> None:
    clock = Clock()

    def sleep(seconds: float) -> None:
        raise KeyboardInterrupt

    seawall.testing.set_testing(False)  # the injected sleep is called
    try:
        sw = seawall.Seawall(budget_policy(), entrypoints=False, clock=clock, sleep=sleep)
        sent = 0

        def fetch() -> None:
            nonlocal sent
            sent += 1
            raise ConnectionResetError("connection reset by peer")

        for _ in range(3):
            with pytest.raises(KeyboardInterrupt):
                sw.call_sync(fetch, key="upstream")
    finally:
        seawall.testing.set_testing(True)
    assert sent == 3
    assert retries_spent(sw) == 0


def test_a_retry_that_went_stays_spent() -> None:
    """Only a retry that never went is given back."""
    sw = seawall.Seawall(budget_policy(), entrypoints=False)
    answers = iter([ConnectionResetError("connection reset by peer"), None])

    def fetch() -> str:
        error = next(answers)
        if error is not None:
            raise error
        return "ok"

    assert sw.call_sync(fetch, key="upstream") == "ok"
    assert retries_spent(sw) == 1


def test_a_retry_the_breaker_refuses_after_its_wait_gives_the_token_back() -> None:
    """While a call sleeps before its retry, another call's failure opens the breaker: the
    retry is refused (no upstream call), so its token goes back."""
    clock = Clock()
    slept = 0

    def down() -> None:
        raise ConnectionResetError("connection reset by peer")

    def sleep(seconds: float) -> None:
        nonlocal slept
        slept += 1
        clock.advance(seconds)
        if slept == 1:  # the first call's wait: another call fails, unretried, and opens it
            with pytest.raises(ConnectionResetError):
                sw.using(key="upstream", on=TimeoutError).call_sync(down)

    pol = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=3),
        breaker=seawall.BreakerPolicy(failure_threshold=1, minimum_calls=10),
        budget=seawall.BudgetPolicy(ratio=0.5, min_retries_per_second=0.2, window=10),
    )
    seawall.testing.set_testing(False)  # the injected sleep is called
    try:
        sw = seawall.Seawall(pol, entrypoints=False, clock=clock, sleep=sleep)
        with pytest.raises(seawall.CircuitOpenError):
            sw.call_sync(down, key="upstream")
    finally:
        seawall.testing.set_testing(True)
    (state,) = sw._states.values()
    assert state.breaker.state is seawall.BreakerState.OPEN
    assert slept == 1
    assert retries_spent(sw) == 0  # before: 1, a retry never made
