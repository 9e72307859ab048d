"""A protected function given a generator, an async generator or a file (a streamed request
body) is not called again once the first attempt has read it: the retry would hand the
function an exhausted stream, the upstream would get an empty body and the caller a
success. Untouched, it is retried as usual."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import seawall

from ._helpers import policy
from .conftest import Upstream

#: POST allowed, so that what stops the second attempt is the body, not the method
#: (tests/test_call_methods.py: a function's POST is otherwise sent once).
POST_TOO = policy(max_attempts=3, retry_methods={"GET", "POST"})


def recording(up: Upstream) -> list[bytes]:
    """The upstream records each body; busy (503) for a whole one, it stores an empty one."""
    bodies: list[bytes] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        bodies.append(body)
        return web.Response(status=503 if body else 200, text="stored")

    up.default = handler
    return bodies


async def chunks() -> AsyncIterator[bytes]:
    yield b"hello "
    yield b"world"


def sync_chunks() -> Iterator[bytes]:
    yield b"hello "
    yield b"world"


async def test_an_async_generator_read_by_the_first_attempt_is_not_given_again(
    upstream: tuple[Upstream, TestServer],
) -> None:
    up, server = upstream
    bodies = recording(up)
    sw = seawall.Seawall(POST_TOO, entrypoints=False)
    url = str(server.make_url("/upload"))
    async with httpx.AsyncClient() as http:

        async def upload(body: AsyncIterator[bytes]) -> int:
            resp = await http.post(url, content=body)
            resp.raise_for_status()
            return resp.status_code

        with pytest.raises(httpx.HTTPStatusError) as raised:
            await sw.call(upload, chunks())
        with pytest.raises(httpx.HTTPStatusError):
            await sw.using(key="uploads").call(upload, body=chunks())  # a keyword too
    assert bodies == [b"hello world", b"hello world"]  # before: then b"", and a "success"
    assert any("cannot be given again" in note for note in raised.value.__notes__)


@pytest.mark.parametrize("make", [sync_chunks, lambda: io.BytesIO(b"hello world")])
async def test_a_generator_or_a_file_read_by_the_first_attempt_is_not_given_again(
    upstream: tuple[Upstream, TestServer], make: Any
) -> None:
    up, server = upstream
    bodies = recording(up)
    sw = seawall.Seawall(POST_TOO, entrypoints=False)
    url = str(server.make_url("/upload"))

    @sw.protect
    def upload(body: Any) -> int:
        with httpx.Client() as http:
            resp = http.post(url, content=body)
            resp.raise_for_status()
            return resp.status_code

    def call() -> BaseException | None:
        try:
            upload(make())
        except httpx.HTTPStatusError as exc:
            return exc
        return None

    assert isinstance(await asyncio.to_thread(call), httpx.HTTPStatusError)
    assert bodies == [b"hello world"]


async def test_an_untouched_stream_is_retried() -> None:
    """The attempt failed before reading it (the connection was refused): sent again whole."""
    sw = seawall.Seawall(POST_TOO, entrypoints=False)
    tries = 0

    async def upload(body: AsyncIterator[bytes]) -> bytes:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise ConnectionRefusedError("connection refused")
        return b"".join([chunk async for chunk in body])

    assert await sw.call(upload, chunks()) == b"hello world"

    def upload_file(body: io.BytesIO) -> bytes:
        nonlocal tries
        tries += 1
        if tries < 5:
            raise ConnectionRefusedError("connection refused")
        return body.read()

    assert sw.call_sync(upload_file, io.BytesIO(b"hello world")) == b"hello world"
    assert tries == 5


def test_a_file_given_to_write_to_does_not_stop_retries(tmp_path: Any) -> None:
    """A log file (or ``sys.stdout``) is written, not read: the call is retried as usual."""
    sw = seawall.Seawall(POST_TOO, entrypoints=False)
    tries = 0

    def report(out: io.TextIOBase) -> str:
        nonlocal tries
        tries += 1
        out.write(f"try {tries}\n")
        if tries < 3:
            raise ConnectionRefusedError("connection refused")
        return "sent"

    with (tmp_path / "log.txt").open("a") as log:
        assert sw.call_sync(report, log) == "sent"
    assert tries == 3
