"""A hostile client harms only its own request: the example app under a real uvicorn process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from .test_asgi_e2e import example_app

#: How long the healthy upstream takes to answer, and the hostile client's own limit.
#: Wide apart, so that neither a stall before the call is sent (the limit gone before
#: the upstream sees it) nor one after (the answer there before the cut) decides it.
UPSTREAM_LATENCY = 2.0
TINY = 0.2


@pytest.mark.slow
async def test_tiny_inbound_timeouts_do_not_open_the_breaker_for_everyone(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    """Six requests with ``X-Request-Timeout: 0.2`` against a healthy upstream taking 2 s.

    Each gets its 504; then another caller, with no header, gets the upstream's
    answer, and the breaker is still closed: the six are counted as cut by
    their own deadline, not as the upstream's failures.
    """
    hits = 0
    latency = UPSTREAM_LATENCY

    async def healthy_but_slow(_request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        await asyncio.sleep(latency)  # the upstream's own latency, not a wait in the test
        return web.Response(text="fine")

    upstream_app = web.Application()
    upstream_app.router.add_get("/slow", healthy_but_slow)
    upstream = await aiohttp_server(upstream_app, host="127.0.0.1")
    settings = {
        "UPSTREAM_URL": str(upstream.make_url("/slow")),
        "UPSTREAM_FAILURE_THRESHOLD": "3",
        "UPSTREAM_RECOVERY_TIMEOUT": "30",
        "APP_DEADLINE": "5",
        "HEALTH_DETAIL": "local",  # per-key detail for this loopback test client
    }
    async with example_app(tmp_path, settings) as app, aiohttp.ClientSession() as http:
        base = app.base
        for _ in range(6):
            headers = {"X-Request-Timeout": str(TINY)}
            async with http.get(f"{base}/proxy", headers=headers) as resp:
                assert resp.status == 504, await resp.text()
                problem = await resp.json(content_type=None)
            assert problem["type"] == "urn:seawall:problem:deadline-exceeded"

        latency = 0.0  # the other caller need not wait (its answer is the point, not the time)
        async with http.get(f"{base}/proxy") as resp:  # another caller
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["upstream"] == "fine"

        async with http.get(f"{base}/_seawall/health") as resp:
            assert resp.status == 200
            report = await resp.json()
        assert report["status"] == "healthy"
        (key,) = report["keys"].values()
        assert key["state"] == "closed"
        assert key["failures"] == {}
        # Each short request was either cut mid-attempt or refused before sending.
        assert key["cut_by_deadline"] + key["rejections"].get("deadline", 0) == 6
        assert key["cut_by_deadline"] >= 1, report
    assert hits >= 2
