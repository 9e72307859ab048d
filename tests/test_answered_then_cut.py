"""A request that had its answer is never sent again when its time limit cuts the body short.

DESIGN: "Once a non-idempotent request has a response status, it is never
re-sent, whatever happens to its body". A body that stalls after the status
is cut by the attempt's time limit (the watchdog from 1 s, ``asyncio.timeout``
below): that cancellation must not become a retryable timeout when the
status was a success (an LLM answer seawall reads to price) or the request
is not idempotent (a POST). Found by an audit: a stalled, billable POST to a
completion endpoint reached the upstream four times.

Everything runs on a loop whose clock only the test moves: no time passes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import pytest

import seawall

from .test_watchdog import FrozenClockLoop

PAYLOAD = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
STATUS_LINES = {200: b"200 OK", 400: b"400 Bad Request", 503: b"503 Service Unavailable"}


class Stalling:
    """An upstream on 127.0.0.1 that answers ``status`` with a JSON body it never finishes."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests = 0
        self.answered = asyncio.Event()
        self.never = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        self.requests += 1
        writer.write(
            b"HTTP/1.1 " + STATUS_LINES[self.status] + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            b'{"id": "chatcmpl-1", "choices": [{"message": {"content": "hel'
        )
        await writer.drain()
        self.answered.set()
        await self.never.wait()  # the rest never comes
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _aiohttp_post(sw: seawall.Seawall, url: str) -> Any:
    async with (
        aiohttp.ClientSession(middlewares=[sw.middleware()]) as session,
        session.post(url, json=PAYLOAD) as resp,
    ):
        return resp.status


async def _httpx_post(sw: seawall.Seawall, url: str) -> Any:
    async with httpx.AsyncClient(transport=sw.httpx_transport()) as client:
        return (await client.post(url, json=PAYLOAD)).status_code


Post = Callable[[seawall.Seawall, str], Awaitable[Any]]


def _run(post: Post, status: int, limit: float, path: str) -> tuple[BaseException | None, int]:
    """POST to a stalling upstream under ``limit``; what the caller got, and how many
    requests reached the upstream."""
    loop = FrozenClockLoop()
    upstream = Stalling(status)
    policy = seawall.Policy.for_llm(
        timeout=seawall.TimeoutPolicy(attempt=limit, deadline=limit * 8),
        retry={"retry_methods": ["GET", "POST"], "max_attempts": 4},
    )
    sw = seawall.Seawall(routes={"127.0.0.1": policy}, entrypoints=False)

    async def scenario() -> BaseException | None:
        server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}{path}"
        call = asyncio.ensure_future(post(sw, url))
        answered = asyncio.ensure_future(upstream.answered.wait())
        try:
            # (asyncio.wait_for would never time out here: the clock stands)
            await asyncio.wait([answered, call], return_when=asyncio.FIRST_COMPLETED)
            assert not call.done(), call
            for _ in range(20):
                await asyncio.sleep(0)  # the client reads what body there is, then waits
            loop.now = limit  # the attempt's time limit passes
            for _ in range(200):  # a retry would be sent within these turns (no backoff:
                if call.done():  # the clock stands, so a backoff sleep would never end)
                    break
                await asyncio.sleep(0)
            assert call.done(), "the call neither ended nor sent a retry"
            return call.exception()
        finally:
            upstream.never.set()
            answered.cancel()
            if not call.done():
                call.cancel()
            await asyncio.wait([call, answered])
            server.close()
            await server.wait_closed()
            for _ in range(20):
                await asyncio.sleep(0)  # the upstream's handlers close their side
            await sw.aclose()

    try:
        return loop.run_until_complete(scenario()), upstream.requests
    finally:
        loop.close()


@pytest.mark.parametrize("post", [_aiohttp_post, _httpx_post], ids=["aiohttp", "httpx"])
@pytest.mark.parametrize("limit", [1.0, 0.5], ids=["watchdog", "asyncio.timeout"])
@pytest.mark.parametrize("status", [200, 400])
def test_a_post_whose_body_stalls_after_its_status_is_sent_once(
    post: Post, limit: float, status: int
) -> None:
    """A 200 (its body read to price it) or a 400 (its body read to classify it) to a POST
    that the policy would retry: when the limit cuts the body, the caller gets the timeout
    and the upstream saw the request once."""
    exc, requests = _run(post, status, limit, "/v1/chat/completions")
    assert requests == 1
    assert isinstance(exc, TimeoutError) or isinstance(exc.__cause__, TimeoutError), exc
