"""The sync httpx transports and the caller's deadline: a thread cannot be cut short, so
seawall bounds httpx's own timeouts by the time the deadline leaves. The call ends by its
deadline (not after httpx's longer timeout), and an attempt the deadline cut is not the
upstream's failure. Each client runs in a thread while the event loop serves."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import seawall

FLAVOURS = [pytest.param(httpx, id="httpx"), pytest.param(httpx2, id="httpx2")]


class Slow:
    """An upstream that answers only when released (or after 5 s); counts its requests."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.hits = 0

    async def handle(self, _request: web.Request) -> web.StreamResponse:
        self.hits += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.release.wait(), 5)
        return web.Response(text="late")


async def ok(_request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


@pytest.fixture
async def slow(aiohttp_server: Any) -> AsyncIterator[tuple[Slow, TestServer]]:
    up = Slow()
    app = web.Application()
    app.router.add_get("/", up.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    yield up, server
    up.release.set()


def breaker_policy() -> seawall.Policy:
    """A breaker that one counted failure opens."""
    return seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=3),
        breaker=seawall.BreakerPolicy(failure_threshold=1, minimum_calls=1, window=1),
    )


@pytest.mark.parametrize("package", FLAVOURS)
async def test_the_deadline_bounds_a_sync_call_and_its_cut_is_not_a_failure(
    slow: tuple[Slow, TestServer], package: Any
) -> None:
    """httpx would wait 10 s; the caller's 0.3 s deadline ends the call, and the upstream
    is not blamed: no breaker count, counted as cut by deadline."""
    up, server = slow
    sw = seawall.Seawall(breaker_policy(), entrypoints=False)
    transport = sw.httpx_transport(sync=True, package=package.__name__)
    url = str(server.make_url("/"))

    def call() -> tuple[BaseException | None, float, Any]:
        with package.Client(transport=transport, timeout=10) as http:
            started = time.monotonic()
            try:
                with seawall.deadline(0.3):
                    http.get(url)
            except package.TimeoutException as exc:
                return exc, time.monotonic() - started, http.timeout
            return None, time.monotonic() - started, http.timeout

    error, took, timeout = await asyncio.to_thread(call)
    assert isinstance(error, seawall.DeadlineExceededError)
    assert took < 3  # not httpx's 10 s, nor the upstream's 5 s
    assert up.hits == 1
    (state,) = sw._states.values()
    assert state.breaker.state is seawall.BreakerState.CLOSED
    assert state.breaker.consecutive_failures == 0
    assert state.stats.cut_by_deadline == 1
    assert timeout == package.Timeout(10)  # the client's own timeouts are left as they were


@pytest.mark.parametrize("package", FLAVOURS)
async def test_the_callers_own_shorter_timeout_is_still_the_upstreams_failure(
    slow: tuple[Slow, TestServer], package: Any
) -> None:
    """httpx's own timeout (0.2 s) is sooner than the deadline: a slow upstream's failure,
    retried and counted, as without a deadline."""
    up, server = slow
    pol = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=2),
        breaker=seawall.BreakerPolicy(enabled=False),
        budget=seawall.BudgetPolicy(enabled=False),
    )
    sw = seawall.Seawall(pol, entrypoints=False)
    transport = sw.httpx_transport(sync=True, package=package.__name__)
    url = str(server.make_url("/"))

    def call() -> BaseException | None:
        with package.Client(transport=transport, timeout=0.2) as http:
            try:
                with seawall.deadline(8):
                    http.get(url)
            except package.TransportError as exc:
                return exc
            return None

    error = await asyncio.to_thread(call)
    assert isinstance(error, seawall.RetriesExhaustedError)
    assert isinstance(error.__cause__, package.ReadTimeout)
    assert up.hits == 2
    (state,) = sw._states.values()
    assert state.stats.cut_by_deadline == 0


@pytest.mark.parametrize("package", FLAVOURS)
async def test_the_request_keeps_its_own_timeouts_after_a_bounded_attempt(
    aiohttp_server: Any, package: Any
) -> None:
    """The bound is for the attempt: the response the caller gets has its request's timeouts."""
    app = web.Application()
    app.router.add_get("/", ok)
    server = await aiohttp_server(app, host="127.0.0.1")
    sw = seawall.Seawall(entrypoints=False)
    transport = sw.httpx_transport(sync=True, package=package.__name__)

    def call() -> tuple[str, Any]:
        with package.Client(transport=transport, timeout=7) as http, seawall.deadline(5):
            resp = http.get(str(server.make_url("/")))
            return resp.text, resp.request.extensions["timeout"]

    text, timeouts = await asyncio.to_thread(call)
    assert text == "ok"
    assert timeouts == {"connect": 7, "read": 7, "write": 7, "pool": 7}
