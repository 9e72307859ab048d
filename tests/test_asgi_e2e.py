"""The example Starlette app under a real uvicorn process, in front of a flaky upstream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_log(log: Path) -> str:
    """uvicorn's output, for failure messages."""
    return log.read_text(errors="replace")


class Flaky:
    """An upstream that answers ok, 503, or hangs until released; counts hits."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.hits = 0
        self.release = asyncio.Event()

    async def handle(self, _request: web.Request) -> web.Response:
        self.hits += 1
        if self.mode == "slow":
            await asyncio.wait_for(self.release.wait(), 10)
        if self.mode == "fail":
            return web.Response(status=503, text="down")
        return web.Response(text="fine")


async def wait_until(
    check: Any, proc: asyncio.subprocess.Process, log: Path, *, tries: int = 100
) -> None:
    """Poll ``check`` every 50 ms, at most ``tries`` times, failing if uvicorn died."""
    for _ in range(tries):
        if proc.returncode is not None:
            pytest.fail(f"uvicorn exited {proc.returncode}:\n{server_log(log)}")
        if await check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"gave up waiting after {tries} polls:\n{server_log(log)}")


class App:
    """The example app running under uvicorn: its base URL, process and log."""

    def __init__(self, base: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.base = base
        self.proc = proc
        self.log = log


@contextlib.asynccontextmanager
async def example_app(
    tmp_path: Path,
    settings: dict[str, str],
    *,
    app_dir: Path = EXAMPLES,
    target: str = "starlette_app:app",
    loop: str = "asyncio",
) -> AsyncIterator[App]:
    """``examples/starlette_app.py`` (or ``target`` in ``app_dir``) under a real uvicorn
    on a free loopback port.

    ``settings``: the app's environment variables. Yields once it is live (its
    ``/_seawall/live`` answers); on exit stops it and checks that it shut down cleanly.
    ``loop``: uvicorn's ``--loop``, named always: its default picks uvloop whenever
    it is installed (``uvicorn[standard]`` installs it), asyncio's loop otherwise.
    """
    port = free_port()
    env = {**os.environ, "SEAWALL_LOAD_PLUGINS": "", **settings}
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(app_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            loop,
            "--no-access-log",
            target,
            env=env,
            stdout=out,
            stderr=out,
        )
    app = App(f"http://127.0.0.1:{port}", proc, log)
    try:
        async with aiohttp.ClientSession() as http:

            async def live() -> bool:
                try:
                    async with http.get(f"{app.base}/_seawall/live") as resp:
                        return resp.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            # 60 s and more: uvicorn, starlette and seawall import slowly on a loaded machine
            # (10 s was not always enough under load).
            await wait_until(live, proc, log, tries=1200)
        yield app
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    # uvicorn re-raises SIGTERM after its graceful shutdown.
    assert proc.returncode in (0, -signal.SIGTERM), server_log(log)
    assert "Application shutdown complete" in server_log(log)


@pytest.mark.slow
@pytest.mark.parametrize("server_loop", ["asyncio", "uvloop"])
async def test_example_app_under_uvicorn(
    aiohttp_server: Any, tmp_path: Path, server_loop: str
) -> None:
    """Deadline propagation, 503 with Retry-After while open, and health 503 then 200 again,
    on asyncio's loop and on uvloop (what ``uvicorn[standard]`` runs by default)."""
    flaky = Flaky()
    upstream_app = web.Application()
    upstream_app.router.add_get("/flaky", flaky.handle)
    upstream = await aiohttp_server(upstream_app, host="127.0.0.1")
    settings = {
        "UPSTREAM_URL": str(upstream.make_url("/flaky")),
        "UPSTREAM_FAILURE_THRESHOLD": "3",
        "UPSTREAM_RECOVERY_TIMEOUT": "2",
        # Long enough that a deadline-bounded answer below can only be the
        # inbound header's (the slow upstream answers "fine" after 10 s).
        "APP_DEADLINE": "30",
    }
    try:
        async with (
            example_app(tmp_path, settings, loop=server_loop) as app,
            aiohttp.ClientSession() as http,
        ):
            base, proc, log = app.base, app.proc, app.log

            async def live() -> bool:
                try:
                    async with http.get(f"{base}/_seawall/live") as resp:
                        return resp.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            async def health() -> tuple[int, dict[str, Any]]:
                async with http.get(f"{base}/_seawall/health") as resp:
                    return resp.status, await resp.json()

            async with http.head(f"{base}/_seawall/health") as resp:
                assert resp.status == 200
                assert await resp.read() == b""

            async with http.get(f"{base}/proxy") as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["upstream"] == "fine"
            async with http.get(base) as resp:
                assert 20.0 < (await resp.json())["deadline_left"] <= 30.0

            # An inbound deadline of 0.5 s bounds the call to an upstream that
            # hangs for 10 s (then answers 200); the app's own deadline is 30 s.
            flaky.mode = "slow"
            before = flaky.hits
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            headers = {"X-Request-Timeout": "0.5"}
            async with http.get(f"{base}/proxy", headers=headers) as resp:
                elapsed = loop.time() - t0
                assert resp.status == 504, await resp.text()
                assert resp.content_type == "application/problem+json"
                body = await resp.json(content_type=None)
            assert body["type"] == "urn:seawall:problem:deadline-exceeded"
            assert elapsed > 0.4  # not before the deadline (a lower bound: load cannot break it)
            assert flaky.hits - before == 1
            flaky.release.set()

            # The upstream fails: the breaker opens and requests get 503 + Retry-After.
            flaky.mode = "fail"
            opened = None
            for _ in range(10):
                async with http.get(f"{base}/proxy") as resp:
                    if resp.status == 503:
                        opened = (dict(resp.headers), await resp.json(content_type=None))
                        break
                    assert resp.status == 502, await resp.text()
            assert opened is not None, "the breaker never opened"
            headers_503, problem = opened
            assert headers_503["Content-Type"] == "application/problem+json"
            assert 1 <= int(headers_503["Retry-After"]) <= 2
            assert problem["type"] == "urn:seawall:problem:circuit-open"
            assert problem["upstream"] == f"http://127.0.0.1:{upstream.port}"

            code, report = await health()
            assert (code, report) == (503, {"status": "unhealthy"})  # no upstream names
            assert await live()

            # The upstream recovers: readiness comes back once a probe is due,
            # and the first call through closes the breaker.
            flaky.mode = "ok"

            async def ready() -> bool:
                return (await health())[0] == 200

            await wait_until(ready, proc, log, tries=100)
            async with http.get(f"{base}/proxy") as resp:
                assert resp.status == 200, await resp.text()
            code, report = await health()
            assert (code, report["status"]) == (200, "healthy")
    finally:
        flaky.release.set()
