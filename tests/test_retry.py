"""When seawall retries, and that every retry is clean: methods, bodies, context, release."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

import seawall
from seawall import Category, Severity

from ._helpers import Recorder, policy
from ._servers import RawServer, read_request
from .conftest import status

IDEMPOTENT = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]


def _sw(recorder: Recorder | None = None, **retry: object) -> seawall.Seawall:
    return seawall.Seawall(
        policy(**retry), entrypoints=False, plugins=[recorder] if recorder else []
    )


# --- which requests are retried ---------------------------------------------------------


@pytest.mark.parametrize("method", IDEMPOTENT)
async def test_idempotent_methods_are_retried(upstream, make_session, method) -> None:
    """Every idempotent method meets a 503 three times: max_attempts upstream calls."""
    up, server = upstream
    up.default = status(503)
    async with make_session(_sw()) as session, session.request(method, server.make_url("/")) as r:
        assert r.status == 503
    assert up.hits == 3


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_post_and_patch_are_not_retried(upstream, make_session, method) -> None:
    """POST and PATCH could apply twice: sent once, the 503 returned."""
    up, server = upstream
    up.default = status(503)
    async with (
        make_session(_sw()) as session,
        session.request(method, server.make_url("/"), data=b"x") as resp,
    ):
        assert resp.status == 503
    assert up.hits == 1


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_idempotency_key_allows_retrying_post(upstream, make_session, method) -> None:
    """An Idempotency-Key header makes a POST/PATCH safe to resend, body and all."""
    up, server = upstream
    up.default = status(503)
    async with (
        make_session(_sw()) as session,
        session.request(
            method, server.make_url("/"), data=b"payload", headers={"Idempotency-Key": "k1"}
        ) as resp,
    ):
        assert resp.status == 503
    assert up.hits == 3
    assert [await r.read() for r in up.requests] == [b"payload"] * 3


async def test_retry_methods_allows_post(upstream, make_session) -> None:
    """retry_methods can opt POST in."""
    up, server = upstream
    up.then(status(503))
    sw = _sw(retry_methods={"GET", "post"})
    async with make_session(sw) as session, session.post(server.make_url("/"), json={}) as resp:
        assert resp.status == 200
    assert up.hits == 2


async def test_retry_methods_can_exclude_an_idempotent_method(upstream, make_session) -> None:
    """A method left out of retry_methods is not retried even when idempotent."""
    up, server = upstream
    up.default = status(503)
    async with (
        make_session(_sw(retry_methods={"GET"})) as session,
        session.delete(server.make_url("/")) as resp,
    ):
        assert resp.status == 503
    assert up.hits == 1


async def test_async_generator_body_is_never_resent(upstream, make_session) -> None:
    """A streamed (async generator) body is consumed by the first attempt and not re-sent."""
    up, server = upstream
    up.default = status(503)
    produced = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal produced
        for _ in range(3):
            produced += 1
            yield b"chunk"

    async with (
        make_session(_sw()) as session,
        session.put(server.make_url("/"), data=body()) as resp,
    ):
        assert resp.status == 503
    assert up.hits == 1
    assert produced == 3
    assert await up.requests[0].read() == b"chunk" * 3


async def test_retry_on_is_respected(upstream, make_session) -> None:
    """A retryable 503 is not retried when SERVER is not in retry_on."""
    up, server = upstream
    up.default = status(503)
    async with (
        make_session(_sw(retry_on={Category.NETWORK})) as session,
        session.get(server.make_url("/")) as resp,
    ):
        assert resp.status == 503
    assert up.hits == 1


async def test_classification_max_retries_is_respected() -> None:
    """A plugin's classification with max_retries=2 allows exactly two retries."""

    class TwoRetries:
        @seawall.hookimpl
        def seawall_classify(self, outcome: seawall.Outcome) -> seawall.Classification | None:
            if outcome.exception is None:
                return None
            return seawall.Classification(
                category=Category.SERVER, retryable=True, max_retries=2, reason="flaky"
            )

    sw = seawall.Seawall(policy(max_attempts=10), entrypoints=False, plugins=[TwoRetries()])
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("flaky")

    with pytest.raises(RuntimeError):
        await sw.call(flaky, key="two")
    assert calls == 3


# --- call context -------------------------------------------------------------------------


async def test_critical_context_through_call_raises_severity_and_escalates() -> None:
    """sw.call(context={'critical': True}) turns a MEDIUM network failure into a HIGH incident."""
    rec = Recorder()
    sw = _sw(rec, max_attempts=2)

    async def down() -> None:
        raise ConnectionResetError("connection reset")

    with pytest.raises(ConnectionResetError):
        await sw.call(down, key="payments", context={"critical": True})
    await sw.aclose()
    assert rec.outcomes[0].context == {"critical": True}
    # The first failure is told at once; the repeat folded into it is flushed on aclose().
    assert [i.count for i in rec.incidents] == [1, 1]
    assert rec.incidents[0].severity is Severity.HIGH
    assert rec.incidents[0].category is Category.NETWORK


async def test_critical_context_escalates_a_low_severity_client_error(
    upstream, make_session
) -> None:
    """A critical operation's 404 (LOW otherwise) is escalated as HIGH, and still not retried."""
    up, server = upstream
    up.default = status(404)
    rec = Recorder()
    sw = _sw(rec, max_attempts=2)
    async with make_session(sw) as session:
        with seawall.context(critical=True):
            async with session.get(server.make_url("/")) as resp:
                assert resp.status == 404
    await sw.aclose()
    assert [(i.severity, i.category) for i in rec.incidents] == [(Severity.HIGH, Category.CLIENT)]
    assert up.hits == 1


async def test_critical_context_never_lowers_a_severity() -> None:
    """A CRITICAL classification of a critical call stays CRITICAL (at least HIGH, not HIGH)."""
    rec = Recorder()
    sw = _sw(rec, max_attempts=1)
    sw.add_pattern(
        "disk on fire",
        seawall.Classification(category=Category.RESOURCE_EXHAUSTION, severity=Severity.CRITICAL),
    )

    async def burning() -> None:
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        await sw.call(burning, key="store", context={"critical": True})
    await sw.aclose()
    assert [i.severity for i in rec.incidents] == [Severity.CRITICAL]


async def test_critical_context_leaves_a_success_alone(upstream, make_session) -> None:
    """A critical call that succeeds raises no incident."""
    _up, server = upstream
    rec = Recorder()
    sw = _sw(rec, max_attempts=2)
    async with make_session(sw) as session:
        with seawall.context(critical=True):
            async with session.get(server.make_url("/")) as resp:
                assert resp.status == 200
    await sw.aclose()
    assert rec.incidents == []


async def test_without_context_a_network_failure_is_not_escalated() -> None:
    """The same failure without the critical flag raises no incident."""
    rec = Recorder()
    sw = _sw(rec, max_attempts=2)

    async def down() -> None:
        raise ConnectionResetError("connection reset")

    with pytest.raises(ConnectionResetError):
        await sw.call(down, key="payments")
    await sw.aclose()
    assert rec.incidents == []


async def test_critical_context_manager_through_aiohttp(upstream, make_session) -> None:
    """`with seawall.context(critical=True)` marks requests: a 503 escalates as HIGH."""
    up, server = upstream
    up.default = status(503)
    rec = Recorder()
    sw = _sw(rec, max_attempts=2)
    async with make_session(sw) as session:
        with seawall.context(critical=True, operation="charge"):
            async with session.get(server.make_url("/")) as resp:
                assert resp.status == 503
        async with session.get(server.make_url("/")) as resp:
            assert resp.status == 503
    await sw.aclose()
    assert rec.outcomes[0].context == {"critical": True, "operation": "charge"}
    assert rec.outcomes[-1].context == {}
    # The second attempt's incident is folded into the first and flushed on aclose().
    assert [i.severity for i in rec.incidents] == [Severity.HIGH, Severity.HIGH]


@pytest.mark.parametrize(
    ("previous", "expected"),
    [(None, [1.0, 1.0, 2.0]), (2, [2.0, 2.0, 2.0])],
)
async def test_more_than_two_failures_double_the_delay(previous, expected) -> None:
    """Once a call has failed more than twice (earlier failures included), delays double."""
    rec = Recorder()
    sw = _sw(rec, max_attempts=4, backoff="constant", jitter="none", base_delay=1.0, max_delay=5.0)

    async def down() -> None:
        raise ConnectionResetError("connection reset")

    context = None if previous is None else {"previous_failures": previous}
    with pytest.raises(ConnectionResetError):
        await sw.call(down, key="slow", context=context)
    assert [d for d, _ in rec.delays()] == expected


# --- cancellation ---------------------------------------------------------------------------


async def test_cancelled_request_is_neither_retried_nor_counted(
    aiohttp_server, make_session
) -> None:
    """Cancelling a request in flight sends nothing more and records no failure."""
    arrived, never = asyncio.Event(), asyncio.Event()
    hits = 0

    async def handler(_request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        arrived.set()
        await never.wait()
        return web.Response()  # pragma: no cover

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    sw = seawall.Seawall(entrypoints=False)
    async with make_session(sw) as session:
        task = asyncio.create_task(session.get(server.make_url("/")))
        async with asyncio.timeout(5):
            await arrived.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert hits == 1
    [state] = sw.health()["keys"].values()
    assert state["consecutive_failures"] == 0
    assert state["failures"] == {}
    assert state["retries"] == 0


async def test_cancelled_error_from_call_is_not_retried() -> None:
    """A CancelledError raised by the protected coroutine propagates at once."""
    sw = seawall.Seawall(entrypoints=False)
    calls = 0

    async def cancelled() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await sw.call(cancelled, key="cancel")
    assert calls == 1
    assert sw.health()["keys"]["cancel"]["consecutive_failures"] == 0


# --- releasing discarded responses -----------------------------------------------------------


def _big_error_app(size: int, chunked: bool) -> tuple[web.Application, list[int]]:
    hits = [0]
    payload = b"e" * size

    async def handler(request: web.Request) -> web.StreamResponse:
        hits[0] += 1
        if not chunked:
            return web.Response(status=503, body=payload)
        resp = web.StreamResponse(status=503)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for start in range(0, size, 16_384):
            await resp.write(payload[start : start + 16_384])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/", handler)
    return app, hits


# (body size, requests): small bodies are read whole for classification; bodies over
# 64 KiB are not (or only partly), and 4 MB ones do not fit in the socket buffers, so
# an unreleased one would hold its connection and hang the pool.
SIZES = [(10_000, 2000), (200_000, 400), (4_000_000, 30)]


@pytest.mark.parametrize(("size", "requests"), SIZES)
@pytest.mark.parametrize("chunked", [False, True])
async def test_discarded_responses_are_released(aiohttp_server, size, requests, chunked) -> None:
    """Thousands of failing requests with big error bodies through limit=2 never exhaust it."""
    app, hits = _big_error_app(size, chunked)
    server = await aiohttp_server(app, host="127.0.0.1")
    sw = _sw(max_attempts=2)
    connector = aiohttp.TCPConnector(limit=2)
    gate = asyncio.Semaphore(16)

    async def one(session: aiohttp.ClientSession) -> int:
        async with gate, session.get(server.make_url("/")) as resp:
            return resp.status

    # A hang guard, not a target: 4000 exchanges took over 20 s on a loaded machine.
    async with asyncio.timeout(180), sw.session(connector=connector) as session:
        statuses = await asyncio.gather(*(one(session) for _ in range(requests)))
        assert len(connector._acquired) == 0
    assert statuses == [503] * requests
    assert hits[0] == 2 * requests


@pytest.mark.parametrize("size", [1_000, 70_000, 300_000])
@pytest.mark.parametrize("chunked", [False, True])
async def test_error_body_is_readable_after_classification(
    aiohttp_server, make_session, size, chunked
) -> None:
    """The caller reads the whole error body through read()/text()/json() and resp.content."""
    document = {"error": "x" * size}
    payload = json.dumps(document).encode()

    async def handler(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(status=500, body=payload, content_type="application/json")
        resp = web.StreamResponse(status=500, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for start in range(0, len(payload), 10_000):
            await resp.write(payload[start : start + 10_000])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    rec = Recorder()
    sw = _sw(rec, max_attempts=2)
    async with asyncio.timeout(10), make_session(sw) as session:
        async with session.get(server.make_url("/")) as resp:
            assert resp.status == 500
            assert await resp.read() == payload
            assert await resp.text() == payload.decode()
            assert await resp.json() == document
        async with session.get(server.make_url("/")) as resp:
            chunks = [chunk async for chunk in resp.content.iter_chunked(4096)]
            assert b"".join(chunks) == payload
    body = rec.outcomes[0].body
    if chunked or size < 65_536:
        assert body is not None
        assert payload.startswith(body)
        assert len(body) == min(len(payload), 65_536)
    else:
        assert body is None  # declared longer than 64 KiB: not read at all


# --- aiohttp's hidden reconnect-retry -----------------------------------------------------------


class DropReused:
    """Answers the first request on the first connection with a keep-alive 200, drops the rest."""

    def __init__(self) -> None:
        self.requests = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first_connection = self.requests == 0
        await read_request(reader)
        self.requests += 1
        if first_connection:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
            )
            await writer.drain()
            await read_request(reader)  # the reused connection's next request
            self.requests += 1
        # close without answering: ServerDisconnectedError on the client


@pytest.mark.parametrize("max_attempts", [1, 3])
async def test_hidden_reconnect_retry_does_not_multiply_attempts(
    make_session, max_attempts
) -> None:
    """A dropped keep-alive connection costs exactly max_attempts upstream requests."""
    script = DropReused()
    sw = _sw(max_attempts=max_attempts)
    async with RawServer(script) as server, make_session(sw) as session:
        async with session.get(server.url()) as resp:
            assert await resp.read() == b"ok"
        before = script.requests
        with pytest.raises(seawall.RetriesExhaustedError) as info:
            await session.get(server.url())
    assert isinstance(info.value, aiohttp.ClientConnectionError)
    assert isinstance(info.value.__cause__, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)
    assert script.requests - before == max_attempts


async def test_hidden_retry_not_triggered_when_seawall_declines(make_session) -> None:
    """A disconnect seawall will not retry (method outside retry_methods) is sent once in all."""
    script = DropReused()
    sw = _sw(retry_methods={"GET"})
    async with RawServer(script) as server, make_session(sw) as session:
        async with session.get(server.url()) as resp:
            await resp.read()
        before = script.requests
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.delete(server.url())
    assert script.requests - before == 1


async def test_streaming_error_bodies_are_not_read(aiohttp_server, make_session) -> None:
    """A text/event-stream error is classified by status alone; the caller gets the stream."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=503, headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: busy\n\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    rec = Recorder()
    sw = _sw(rec, max_attempts=2)
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 503
        assert await resp.read() == b"data: busy\n\n"
    assert [o.body for o in rec.outcomes] == [None, None]
    assert rec.outcomes[0].content_type == "text/event-stream"


async def test_success_bodies_are_not_read(upstream, make_session) -> None:
    """A 200 is handed over unread: its body is still in the stream, not in the outcome."""
    up, server = upstream
    rec = Recorder()
    sw = _sw(rec)
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 200
        assert resp._body is None
        assert await resp.text() == "ok"
    assert rec.outcomes[0].body is None
    assert up.hits == 1


# --- the sw.call adapter ----------------------------------------------------------------------


async def test_protect_decorator_retries_like_call() -> None:
    """@sw.protect(key=...) retries the decorated coroutine function and keeps its name."""
    sw = _sw(max_attempts=3)
    calls = 0

    @sw.protect(key="search")
    async def search(term: str) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionResetError("connection reset")
        return term.upper()

    assert await search("x") == "X"
    assert calls == 3
    assert search.__name__ == "search"
    assert sw.health()["keys"]["search"]["retries"] == 2


async def test_call_with_a_non_awaitable_is_a_type_error_not_retried() -> None:
    """Passing a plain function to sw.call fails at once with advice."""
    sw = _sw()
    calls = 0

    def sync() -> int:
        nonlocal calls
        calls += 1
        return 1

    with pytest.raises(TypeError, match=r"pass an async function.*sw\.call_sync"):
        await sw.call(sync, key="sync")  # type: ignore[arg-type]
    assert calls == 1
    assert sw.protect()(sync)() == 1  # a decorated def runs in the thread (tests/test_sync.py)
    assert calls == 2


async def test_no_event_is_built_when_nobody_listens(upstream, make_session, monkeypatch) -> None:
    """With no seawall_event plugin, retries build no event objects at all."""
    up, server = upstream
    up.then(status(503))
    sw = _sw()

    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("an event was built with nobody listening")

    monkeypatch.setattr(sw._observer, "emit", forbidden)
    monkeypatch.setattr(sw._observer, "attempt", forbidden)
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 200
    assert up.hits == 2
