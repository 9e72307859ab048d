"""An error whose body comes slowly reaches the caller without waiting for the whole body.

seawall reads the start of an error body to classify it. Against an upstream
that drips its 503 body (a byte at a time, for seconds), it waited for all of
it before handing the response over, where bare aiohttp and httpx give the
status at once: a caller that would have moved on waited the whole drip. Now
the read stops after ``ERROR_BODY_WAIT`` seconds (patched small here): the
error is classified from what came, and the caller still reads the whole
body. Sync clients run in a thread while the event loop serves.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import httpx2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import seawall
from seawall import aiohttp as seawall_aiohttp
from seawall import httpx_core

DRIPS = 200  # spaces dripped, one every DRIP seconds (4 s in all, unless released)
DRIP = 0.02
HEAD = b'{"error": {"message": "slow"'
TAIL = b"}}"


class Dripper:
    """A 503 whose body drips until ``released`` (then it ends at once); ``sent``: drips so
    far."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.sent = 0
        self.stall = False  # after its start, the body stops until released

    async def handler(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=503, headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(HEAD)
        if self.stall:
            await self.released.wait()
        for _ in range(DRIPS):
            if self.released.is_set():
                break
            await asyncio.sleep(DRIP)  # the upstream's pace, not a wait for state
            await resp.write(b" ")
            self.sent += 1
        await resp.write(TAIL)
        await resp.write_eof()
        return resp


@pytest.fixture
async def dripping() -> AsyncIterator[tuple[Dripper, str]]:
    dripper = Dripper()
    app = web.Application()
    app.router.add_get("/", dripper.handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield dripper, str(server.make_url("/"))
    finally:
        dripper.released.set()
        await server.close()


@pytest.fixture(autouse=True)
def short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seawall_aiohttp, "ERROR_BODY_WAIT", 0.1)
    monkeypatch.setattr(httpx_core, "ERROR_BODY_WAIT", 0.1)


def _sw() -> seawall.Seawall:
    once = seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1))
    return seawall.Seawall(routes={"127.0.0.1": once}, entrypoints=False)


def _whole(body: bytes) -> None:
    assert body.startswith(HEAD)
    assert body.endswith(TAIL)
    assert json.loads(body) == {"error": {"message": "slow"}}


async def test_aiohttp_hands_over_a_dripping_error_before_its_end(
    dripping: tuple[Dripper, str],
) -> None:
    dripper, url = dripping
    sw = _sw()
    async with (
        aiohttp.ClientSession(middlewares=[sw.middleware()]) as session,
        asyncio.timeout(30),
        session.get(url) as resp,
    ):
        at_status = dripper.sent
        dripper.released.set()
        assert resp.status == 503
        _whole(await resp.read())
    assert at_status < DRIPS  # before: the whole drip (200) came first


FLAVOURS = [
    pytest.param((httpx, False), id="httpx-async"),
    pytest.param((httpx, True), id="httpx-sync"),
    pytest.param((httpx2, False), id="httpx2-async"),
    pytest.param((httpx2, True), id="httpx2-sync"),
]


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_httpx_hands_over_a_dripping_error_before_its_end(
    dripping: tuple[Dripper, str], flavour: tuple[Any, bool]
) -> None:
    dripper, url = dripping
    package, sync = flavour
    sw = _sw()
    transport = sw.httpx_transport(sync=sync, package=package.__name__)
    loop = asyncio.get_running_loop()
    if sync:

        def run() -> tuple[int, int, bytes]:
            with package.Client(transport=transport) as client, client.stream("GET", url) as resp:
                at_status = dripper.sent
                loop.call_soon_threadsafe(dripper.released.set)
                return at_status, resp.status_code, resp.read()

        async with asyncio.timeout(30):
            at_status, status, body = await asyncio.to_thread(run)
    else:
        async with (
            asyncio.timeout(30),
            package.AsyncClient(transport=transport) as client,
            client.stream("GET", url) as resp,
        ):
            at_status = dripper.sent
            dripper.released.set()
            status, body = resp.status_code, await resp.aread()
    assert status == 503
    _whole(body)
    assert at_status < DRIPS  # before: the whole drip (200) came first


async def test_an_async_httpx_caller_that_leaves_the_slow_body_unread_leaves_nothing_behind(
    dripping: tuple[Dripper, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The body stops after its start: the read left going for the caller ends when the
    response is closed unread (no task left on the loop, no "exception was never
    retrieved"), and the client works on."""
    dripper, url = dripping
    dripper.stall = True
    sw = _sw()
    transport = sw.httpx_transport()
    before = asyncio.all_tasks()
    async with asyncio.timeout(30), httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", url) as resp:
            assert resp.status_code == 503
        for _ in range(3):
            await asyncio.sleep(0)  # (the ended read's last steps)
        reads = [t for t in asyncio.all_tasks() - before if "next_chunk" in repr(t.get_coro())]
        assert not [task for task in reads if not task.done()], reads
        del reads, resp
        gc.collect()
        dripper.released.set()
        again = await client.get(url)
        assert again.status_code == 503
        _whole(again.content)
    assert "never retrieved" not in caplog.text


async def test_aiohttps_own_read_timeout_in_a_slow_body_still_breaks_it(
    dripping: tuple[Dripper, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client's ``sock_read`` limit (a ``TimeoutError`` too) is not taken for seawall's
    own stop: the body broke off, as before."""
    _, url = dripping
    monkeypatch.setattr(seawall_aiohttp, "ERROR_BODY_WAIT", 10.0)
    sw = _sw()
    timeout = aiohttp.ClientTimeout(sock_read=DRIP / 4)
    async with aiohttp.ClientSession(middlewares=[sw.middleware()], timeout=timeout) as session:
        with pytest.raises(seawall.RetriesExhaustedError) as info:
            async with asyncio.timeout(30):
                await session.get(url)
    assert "SocketTimeoutError" in str(info.value)  # the attempt's failure: its body broke off
