"""A hostile client harms only its own request: the example app under a real uvicorn process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from .test_asgi_e2e import EXAMPLES, free_port, server_log, wait_until

#: How long the healthy upstream takes to answer.
UPSTREAM_LATENCY = 0.1

#: The example app plus an admin route with the whole ``sw.health()``: its
#: readiness endpoint shows only the status (docs/asgi.md, protecting it).
WITH_ADMIN = """
from starlette.responses import JSONResponse
from starlette.routing import Route

import starlette_app

sw = starlette_app.build_seawall()
app = starlette_app.build_app(sw)


async def admin_health(_request):
    return JSONResponse(sw.health())


app.router.routes.append(Route("/_admin/health", admin_health))
"""


@pytest.mark.slow
async def test_tiny_inbound_timeouts_do_not_open_the_breaker_for_everyone(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    """Six requests with ``X-Request-Timeout: 0.03`` against a healthy 100 ms upstream.

    Each gets its 504; then another caller, with no header, gets the upstream's
    answer, and the breaker is still closed: the six are counted as cut by
    their own deadline, not as the upstream's failures.
    """
    hits = 0

    async def healthy_but_slow(_request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        await asyncio.sleep(UPSTREAM_LATENCY)  # the upstream's own latency, not a wait in the test
        return web.Response(text="fine")

    upstream_app = web.Application()
    upstream_app.router.add_get("/slow", healthy_but_slow)
    upstream = await aiohttp_server(upstream_app, host="127.0.0.1")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "UPSTREAM_URL": str(upstream.make_url("/slow")),
        "UPSTREAM_FAILURE_THRESHOLD": "3",
        "UPSTREAM_RECOVERY_TIMEOUT": "30",
        "APP_DEADLINE": "5",
        "SEAWALL_LOAD_PLUGINS": "",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(EXAMPLES), os.environ.get("PYTHONPATH")])),
    }
    (tmp_path / "with_admin.py").write_text(WITH_ADMIN, encoding="utf-8")
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(tmp_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "with_admin:app",
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        async with aiohttp.ClientSession() as http:

            async def live() -> bool:
                try:
                    async with http.get(f"{base}/_seawall/live") as resp:
                        return resp.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await wait_until(live, proc, log, tries=200)
            for _ in range(6):
                headers = {"X-Request-Timeout": "0.03"}
                async with http.get(f"{base}/proxy", headers=headers) as resp:
                    assert resp.status == 504, await resp.text()
                    problem = await resp.json(content_type=None)
                assert problem["type"] == "urn:seawall:problem:deadline-exceeded"

            async with http.get(f"{base}/proxy") as resp:  # another caller
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["upstream"] == "fine"

            async with http.get(f"{base}/_admin/health") as resp:
                assert resp.status == 200
                report = await resp.json()
            assert report["status"] == "healthy"
            (key,) = report["keys"].values()
            assert key["state"] == "closed"
            assert key["failures"] == {}
            # Each short request was either cut mid-attempt or refused before sending.
            assert key["cut_by_deadline"] + key["rejections"].get("deadline", 0) == 6
            assert key["cut_by_deadline"] >= 1, report
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    assert proc.returncode in (0, -signal.SIGTERM), server_log(log)
    assert hits >= 2
