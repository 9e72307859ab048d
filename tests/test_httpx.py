"""The httpx transport against real upstreams on 127.0.0.1, and the SDKs over it."""

from __future__ import annotations

import asyncio
import ssl

import httpx
import openai
import pytest
from aiohttp import web

import seawall
from seawall.fake_llm import FakeProvider
from seawall.fake_llm import status as fake_status
from seawall.httpx import (
    HttpxCircuitOpenError,
    HttpxDeadlineExceededError,
    HttpxRetriesExhaustedError,
)
from seawall.outcome import Category
from seawall.plugins.builtin.exceptions import classify_exception

from ._helpers import opens_after_two, policy
from ._servers import closed_port
from .conftest import status


def client(sw: seawall.Seawall) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=sw.httpx_transport())


async def test_a_503_is_retried(upstream) -> None:
    """A 503 then a 200: the caller sees the 200, the upstream two requests."""
    up, server = upstream
    up.then(status(503))
    sw = seawall.Seawall(policy(max_attempts=3), entrypoints=False)
    async with client(sw) as http:
        resp = await http.get(str(server.make_url("/a")))
    assert resp.status_code == 200
    assert resp.text == "ok"
    assert up.hits == 2


async def test_retry_after_is_believed_and_the_last_response_returned(upstream) -> None:
    """A 503 with a hint above retry_after_max is not retried; its body reaches the caller."""
    up, server = upstream
    up.then(status(503, "busy for an hour", **{"Retry-After": "3600"}))
    sw = seawall.Seawall(policy(max_attempts=3), entrypoints=False)
    async with client(sw) as http:
        resp = await http.get(str(server.make_url("/a")))
    assert resp.status_code == 503
    assert resp.text == "busy for an hour"
    assert up.hits == 1


async def test_breaker_opens_and_raises_an_httpx_transport_error(upstream) -> None:
    """After the breaker opens the call fails fast with an httpx error seawall.unwrap finds."""
    up, server = upstream
    up.default = status(500)
    sw = seawall.Seawall(opens_after_two(), entrypoints=False)
    async with client(sw) as http:
        for _ in range(2):
            assert (await http.get(str(server.make_url("/")))).status_code == 500
        with pytest.raises(httpx.TransportError) as caught:
            await http.get(str(server.make_url("/")))
    assert isinstance(caught.value, HttpxCircuitOpenError)
    assert caught.value.request.url.path == "/"
    assert isinstance(seawall.unwrap(caught.value), seawall.CircuitOpenError)
    assert up.hits == 2


async def test_connection_refused_is_retried_then_wrapped() -> None:
    """httpx's ConnectError is a network error: retried, then RetriesExhausted as httpx error."""
    sw = seawall.Seawall(policy(max_attempts=3), entrypoints=False)
    async with client(sw) as http:
        with pytest.raises(httpx.TransportError) as caught:
            await http.get(f"http://127.0.0.1:{closed_port()}/")
    assert isinstance(caught.value, HttpxRetriesExhaustedError)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert len(caught.value.attempts) == 3


async def test_deadline_is_an_httpx_timeout(aiohttp_server) -> None:
    """An attempt cut by the policy's deadline reaches httpx users as a TimeoutException."""
    release = asyncio.Event()

    async def slow(_request: web.Request) -> web.StreamResponse:
        await asyncio.wait_for(release.wait(), 5)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/", slow)
    server = await aiohttp_server(app, host="127.0.0.1")
    pol = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=2),
        timeout=seawall.TimeoutPolicy(attempt=None, deadline=0.2),
        breaker=seawall.BreakerPolicy(enabled=False),
    )
    sw = seawall.Seawall(pol, entrypoints=False)
    try:
        async with client(sw) as http:
            with pytest.raises(httpx.TimeoutException) as caught:
                await http.get(str(server.make_url("/")))
    finally:
        release.set()
    assert isinstance(caught.value, HttpxDeadlineExceededError)


async def test_a_stream_is_not_held(aiohttp_server) -> None:
    """The caller reads the first chunk while the upstream still holds back the second."""
    second = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"first")
        await asyncio.wait_for(second.wait(), 5)
        await resp.write(b"second")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/", stream)
    server = await aiohttp_server(app, host="127.0.0.1")
    sw = seawall.Seawall(entrypoints=False)
    async with client(sw) as http, http.stream("GET", str(server.make_url("/"))) as resp:
        chunks = aiter(resp.aiter_raw())
        assert await asyncio.wait_for(anext(chunks), 5) == b"first"
        second.set()
        assert [c async for c in chunks] == [b"second"]


def test_httpx_exceptions_are_classified() -> None:
    """httpx's exception types get the categories of their aiohttp counterparts."""
    request = httpx.Request("GET", "http://127.0.0.1/")
    assert classify_exception(httpx.ReadTimeout("t", request=request)).category is Category.TIMEOUT
    connect = httpx.ConnectError("refused", request=request)
    assert classify_exception(connect).category is Category.NETWORK
    assert classify_exception(connect).retryable
    remote = httpx.RemoteProtocolError("Server disconnected", request=request)
    assert classify_exception(remote).category is Category.NETWORK
    bad_scheme = httpx.UnsupportedProtocol("ftp", request=request)
    assert not classify_exception(bad_scheme).retryable
    cert = httpx.ConnectError("cert", request=request)
    cert.__cause__ = ssl.SSLCertVerificationError("bad")
    assert classify_exception(cert).category is Category.TLS
    response = httpx.Response(503, request=request)
    err = httpx.HTTPStatusError("503", request=request, response=response)
    assert classify_exception(err).category is Category.SERVER


# --- the SDKs over the transport ---------------------------------------------------


@pytest.fixture
async def fake():
    async with FakeProvider(chunks=3) as provider:
        yield provider


def llm_seawall() -> seawall.Seawall:
    return seawall.Seawall(routes={"127.0.0.1": seawall.Policy.for_llm()}, entrypoints=False)


async def test_openai_async_through_the_transport(fake) -> None:
    """The OpenAI SDK never sees a 503; the answer is priced; a stream's usage too."""
    sw = llm_seawall()
    fake.then(fake_status(503))
    http = httpx.AsyncClient(transport=sw.httpx_transport())
    async with openai.AsyncOpenAI(
        base_url=fake.url + "/v1", api_key="sk-test", max_retries=0, http_client=http
    ) as sdk:
        answer = await sdk.chat.completions.create(model="gpt-4o", messages=[])
        assert answer.choices[0].message.content == "Hello from the fake."
        assert fake.hits == 2
        assert sw.costs()["calls"] == 1
        stream = await sdk.chat.completions.create(
            model="gpt-4o",
            messages=[],
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = [c.choices[0].delta.content async for c in stream if c.choices]
    assert "".join(p or "" for p in parts)
    assert sw.costs()["calls"] == 2
