"""httpx's ``PoolTimeout`` is the client's own connection pool staying full (a burst of
requests in this process), not the upstream's failure: a burst against a healthy upstream
must not open its breaker for every caller, nor retry into the same full pool."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import httpx2
import pytest
from aiohttp import web

import seawall
from seawall.outcome import Category
from seawall.plugins.builtin.exceptions import classify_exception


@pytest.mark.parametrize("package", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_a_pool_timeout_is_the_callers_own_not_retried_nor_counted(package: Any) -> None:
    request = package.Request("GET", "http://127.0.0.1/")
    c = classify_exception(package.PoolTimeout("no connection free", request=request))
    assert c.category is Category.CALLER
    assert not c.retryable
    assert not c.counts_as_failure
    # the upstream's timeouts are still its own
    read = classify_exception(package.ReadTimeout("slow", request=request))
    assert (read.category, read.retryable) == (Category.TIMEOUT, True)


async def test_a_burst_into_a_small_pool_leaves_a_healthy_upstreams_breaker_closed(
    aiohttp_server: Any,
) -> None:
    """8 requests at once through a pool of 1: the 7 that find no connection in time fail
    as they would without seawall; the breaker stays closed and the next request goes
    (before: the breaker opened, and the next request was refused)."""
    release = asyncio.Event()
    arrived = 0

    async def held(_request: web.Request) -> web.StreamResponse:
        nonlocal arrived
        arrived += 1
        await asyncio.wait_for(release.wait(), 5)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", held)
    server = await aiohttp_server(app, host="127.0.0.1")
    pol = seawall.Policy(breaker=seawall.BreakerPolicy(failure_threshold=5, minimum_calls=5))
    sw = seawall.Seawall(pol, entrypoints=False)
    inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1))
    url = str(server.make_url("/"))
    timeout = httpx.Timeout(5, pool=0.05)
    async with httpx.AsyncClient(transport=sw.httpx_transport(inner), timeout=timeout) as http:
        first = asyncio.create_task(http.get(url))  # holds the pool's one connection
        burst = [asyncio.create_task(http.get(url)) for _ in range(7)]
        results = await asyncio.gather(*burst, return_exceptions=True)
        release.set()
        assert (await first).status_code == 200
        assert all(isinstance(r, httpx.PoolTimeout) for r in results), results
        (state,) = sw._states.values()
        assert state.breaker.state is seawall.BreakerState.CLOSED
        assert state.breaker.consecutive_failures == 0
        assert (await http.get(url)).status_code == 200
    assert arrived == 2
