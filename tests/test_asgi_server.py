"""The ASGI middleware under a real uvicorn process: slow uploaders and the load shedder,
and the app's own errors reaching the server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from seawall.asgi_shed import Shedder

from .test_asgi_e2e import App, example_app, server_log, wait_until

APPS = Path(__file__).resolve().parent / "apps"


class Held:
    """An upstream that answers only when released; counts hits."""

    def __init__(self) -> None:
        self.hits = 0
        self.release = asyncio.Event()

    async def handle(self, _request: web.Request) -> web.Response:
        self.hits += 1
        await asyncio.wait_for(self.release.wait(), 30)
        return web.Response(text="held")


@pytest.mark.slow
async def test_slow_uploaders_do_not_get_other_callers_shed(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    """Clients trickling request bodies hold no concurrency slot: with as many of them as
    max_concurrency, every other caller is served; the shedder still bounds running handlers,
    and a finished upload waits its turn instead of going over the limit."""
    held = Held()
    upstream_app = web.Application()
    upstream_app.router.add_get("/", held.handle)
    upstream = await aiohttp_server(upstream_app, host="127.0.0.1")
    settings = {"MAX_CONCURRENCY": "2", "HOLD_URL": str(upstream.make_url("/"))}
    try:
        async with (
            example_app(tmp_path, settings, app_dir=APPS, target="server_app:app") as app,
            aiohttp.ClientSession() as http,
        ):
            await _check_uploaders_and_shedding(app, http, held)
    finally:
        held.release.set()


async def _check_uploaders_and_shedding(app: App, http: aiohttp.ClientSession, held: Held) -> None:
    port = int(app.base.rsplit(":", 1)[1])

    async def uploads_started() -> bool:
        return server_log(app.log).count("upload started") == 2

    async def inbound() -> dict[str, Any]:
        async with http.get(f"{app.base}/_seawall/health") as resp:
            report: dict[str, Any] = (await resp.json())["inbound"]
            return report

    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    head = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\na"
    holds: list[asyncio.Task[aiohttp.ClientResponse]] = []
    try:
        for _, writer in streams:
            writer.write(head)
            await writer.drain()
        await wait_until(uploads_started, app.proc, app.log, tries=400)

        # Both uploads are in their handlers, waiting for the client: others are served.
        for _ in range(5):
            async with http.get(f"{app.base}/fast") as resp:
                assert resp.status == 200, await resp.text()
        report = await inbound()
        assert (report["in_flight"], report["receiving"], report["shed"]) == (0, 2, 0)

        # Two requests running their handlers fill the service: the next one is shed.
        holds += [asyncio.create_task(http.get(f"{app.base}/hold")) for _ in range(2)]

        async def both_held() -> bool:
            return held.hits == 2

        await wait_until(both_held, app.proc, app.log, tries=400)
        async with http.get(f"{app.base}/fast") as resp:
            assert resp.status == 503
            assert (await resp.json(content_type=None))["type"] == "urn:seawall:problem:overloaded"

        # An upload whose body is now complete waits for a slot, not over the limit.
        reader, writer = streams[0]
        writer.write(b"b" * 9)
        await writer.drain()

        async def upload_waits() -> bool:
            report = await inbound()
            return report["receiving"] == 1 and report["in_flight"] == 2

        await wait_until(upload_waits, app.proc, app.log, tries=400)
        held.release.set()
        for task in holds:
            async with await task as resp:
                assert resp.status == 200, await resp.text()
        answer = await asyncio.wait_for(reader.readuntil(b"}"), 30)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert answer.endswith(b'{"bytes":10}'), answer

        # The other uploader gives up; nothing stays counted.
        streams[1][1].close()

        async def drained() -> bool:
            report = await inbound()
            return (report["in_flight"], report["receiving"]) == (0, 0)

        await wait_until(drained, app.proc, app.log, tries=400)
    finally:
        held.release.set()
        for _, writer in streams:
            writer.close()
        for task in holds:
            task.cancel()
        await asyncio.gather(*holds, return_exceptions=True)


@pytest.mark.slow
async def test_an_app_bug_in_a_seawall_fallback_reaches_the_server(tmp_path: Path) -> None:
    """A KeyError raised in ``except CircuitOpenError:`` is the server's 500, logged with its
    traceback, not a 503 problem that blames the upstream; other callers are served."""
    async with (
        example_app(tmp_path, {}, app_dir=APPS, target="server_app:app") as app,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(f"{app.base}/bug") as resp:
            assert resp.status == 500, await resp.text()
            assert resp.content_type != "application/problem+json"
        async with http.get(f"{app.base}/fast") as resp:
            assert resp.status == 200

        async def logged() -> bool:
            return "KeyError: 'recs'" in server_log(app.log)

        await wait_until(logged, app.proc, app.log, tries=200)
        assert "answered 503" not in server_log(app.log)


# --- the shedder's slots, on their own ----------------------------------------------


async def test_a_slot_taken_back_when_full_waits_and_is_handed_over() -> None:
    """A let-in request taking its slot back on a full service waits for the next release
    (in order), so running requests never exceed the limit; a cancelled waiter passes it on."""
    shedder = Shedder(1, 1.0)
    assert shedder.admit()
    assert not shedder.admit()  # full: shed
    first = asyncio.create_task(shedder.take_back())
    second = asyncio.create_task(shedder.take_back())
    third = asyncio.create_task(shedder.take_back())
    await asyncio.sleep(0)  # let them queue
    assert [task.done() for task in (first, second, third)] == [False, False, False]
    second.cancel()
    shedder.release()  # handed to the first waiter
    await first
    assert shedder.in_flight == 1
    assert not third.done()
    shedder.release()  # the cancelled one is skipped: the third gets it
    await third
    with pytest.raises(asyncio.CancelledError):
        await second
    assert shedder.in_flight == 1
    shedder.release()
    assert shedder.in_flight == 0
    assert shedder.shed == 1
