"""Compressed bodies through the httpx and httpx2 transports, async and sync (httpx asks
for gzip by default): an error body is classified and an LLM answer priced as the caller
reads them (inflated), never inflating more than the bytes seawall reads, and the caller
still gets the whole body, streamed or not. Sync clients run in a thread while the event
loop serves."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import httpx2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import seawall
from seawall._body import ERROR_BODY_LIMIT
from seawall.httpx_core import decoded

from ._helpers import Recorder, policy
from .conftest import Upstream

FLAVOURS = [
    pytest.param((httpx, False), id="httpx-async"),
    pytest.param((httpx, True), id="httpx-sync"),
    pytest.param((httpx2, False), id="httpx2-async"),
    pytest.param((httpx2, True), id="httpx2-sync"),
]
STREAMED = [pytest.param(False, id="read"), pytest.param(True, id="streamed")]

QUOTA = json.dumps(
    {
        "error": {
            "message": "You exceeded your current quota, please check your plan and billing.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
    }
).encode()

ANSWER = json.dumps(
    {
        "id": "c1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
    }
).encode()

#: An error body that compresses only about twice: gzipped it is still well above
#: the 64 KiB seawall reads, so the caller gets what was read and then the rest.
LONG = b"".join(hashlib.sha256(b"%d" % n).hexdigest().encode() for n in range(8192))

#: Inflated size of the bomb: 8 MiB of zeros, about 8 KiB gzipped.
BOMB_SIZE = 8 * 1024 * 1024


def bomb(size: int) -> bytes:
    """``size`` zero bytes, gzipped, without holding them."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    mib = bytes(1024 * 1024)
    return b"".join(deflater.compress(mib) for _ in range(size // len(mib))) + deflater.flush()


def compressed(
    code: int, raw: bytes, *, chunked: bool = False, content_type: str = "application/json"
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler answering ``code`` with ``raw`` as it is, said to be gzip (chunked: no
    Content-Length, sent in 16 KiB pieces)."""
    headers = {"Content-Encoding": "gzip", "Content-Type": content_type}

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        if not chunked:
            return web.Response(status=code, body=raw, headers=headers)
        resp = web.StreamResponse(status=code, headers=headers)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for start in range(0, len(raw), 16 * 1024):
            await resp.write(raw[start : start + 16 * 1024])
        await resp.write_eof()
        return resp

    return handler


async def send(
    sw: seawall.Seawall,
    flavour: tuple[Any, bool],
    method: str,
    url: str,
    *,
    streamed: bool,
    **kwargs: Any,
) -> tuple[int, int, bytes]:
    """One request through seawall's transport of ``flavour``: (status, length of the
    body the caller read, its first 64 KiB). Streamed bodies are not held whole."""
    package, sync = flavour
    transport = sw.httpx_transport(sync=sync, package=package.__name__)

    def whole(resp: Any) -> tuple[int, int, bytes]:
        return resp.status_code, len(resp.content), resp.content[:ERROR_BODY_LIMIT]

    if sync:

        def run() -> tuple[int, int, bytes]:
            with package.Client(transport=transport) as client:
                if not streamed:
                    return whole(client.request(method, url, **kwargs))
                with client.stream(method, url, **kwargs) as resp:
                    size, head = 0, b""
                    for chunk in resp.iter_bytes():
                        size += len(chunk)
                        head = (head + chunk)[:ERROR_BODY_LIMIT]
                    return resp.status_code, size, head

        return await asyncio.to_thread(run)
    async with package.AsyncClient(transport=transport) as client:
        if not streamed:
            return whole(await client.request(method, url, **kwargs))
        async with client.stream(method, url, **kwargs) as resp:
            size, head = 0, b""
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                head = (head + chunk)[:ERROR_BODY_LIMIT]
            return resp.status_code, size, head


def llm(*plugins: object) -> seawall.Seawall:
    policy = seawall.Policy.for_llm()
    return seawall.Seawall(routes={"127.0.0.1": policy}, entrypoints=False, plugins=list(plugins))


# --- through the transports, against a real upstream -----------------------------------


@pytest.mark.parametrize("streamed", STREAMED)
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_a_gzip_insufficient_quota_429_is_quota_and_sent_once(
    upstream: tuple[Upstream, TestServer], flavour: tuple[Any, bool], streamed: bool
) -> None:
    """OpenAI's gzipped 429 insufficient_quota is read inflated: billing, not retried."""
    up, server = upstream
    up.default = compressed(429, gzip.compress(QUOTA))
    recorder = Recorder()
    sw = llm(recorder)
    url = str(server.make_url("/v1/chat/completions"))
    answer = await send(sw, flavour, "POST", url, streamed=streamed, json={"model": "gpt-4o"})
    assert answer == (429, len(QUOTA), QUOTA)
    assert up.hits == 1
    assert [outcome.body for outcome in recorder.outcomes] == [QUOTA]


@pytest.mark.parametrize("streamed", STREAMED)
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_a_gzip_llm_answer_is_priced(
    upstream: tuple[Upstream, TestServer], flavour: tuple[Any, bool], streamed: bool
) -> None:
    """A gzipped JSON answer is priced from its usage; the caller reads it whole."""
    up, server = upstream
    up.default = compressed(200, gzip.compress(ANSWER))
    sw = llm()
    url = str(server.make_url("/v1/chat/completions"))
    answer = await send(sw, flavour, "POST", url, streamed=streamed, json={"model": "gpt-4o"})
    assert answer == (200, len(ANSWER), ANSWER)
    report = sw.costs()
    assert (report.calls, report.input_tokens, report.output_tokens) == (1, 1000, 500)


@pytest.mark.parametrize("streamed", STREAMED)
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_a_gzip_bomb_error_body_is_inflated_only_to_the_limit(
    upstream: tuple[Upstream, TestServer], flavour: tuple[Any, bool], streamed: bool
) -> None:
    """An 8 KiB gzip body that inflates to 8 MiB gives the classifier its first 64 KiB
    only; the caller still reads all 8 MiB."""
    up, server = upstream
    up.default = compressed(503, bomb(BOMB_SIZE), content_type="text/plain")
    recorder = Recorder()
    sw = seawall.Seawall(policy(max_attempts=1), entrypoints=False, plugins=[recorder])
    answer = await send(sw, flavour, "GET", str(server.make_url("/")), streamed=streamed)
    assert answer == (503, BOMB_SIZE, bytes(ERROR_BODY_LIMIT))
    assert [outcome.body for outcome in recorder.outcomes] == [bytes(ERROR_BODY_LIMIT)]


@pytest.mark.parametrize("streamed", STREAMED)
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_a_long_chunked_gzip_error_body_gives_its_start_and_reaches_the_caller_whole(
    upstream: tuple[Upstream, TestServer], flavour: tuple[Any, bool], streamed: bool
) -> None:
    """A gzip body longer than 64 KiB on the wire: the classifier sees the inflated
    start of it, the caller all of it (what was read, then the rest)."""
    up, server = upstream
    raw = gzip.compress(LONG)
    assert len(raw) > 2 * ERROR_BODY_LIMIT
    up.then(compressed(503, raw, chunked=True, content_type="text/plain"))
    recorder = Recorder()
    sw = seawall.Seawall(policy(max_attempts=1), entrypoints=False, plugins=[recorder])
    answer = await send(sw, flavour, "GET", str(server.make_url("/")), streamed=streamed)
    assert answer == (503, len(LONG), LONG[:ERROR_BODY_LIMIT])
    assert [outcome.body for outcome in recorder.outcomes] == [LONG[:ERROR_BODY_LIMIT]]


# --- the helper: what the classifiers are given ----------------------------------------


def response(coding: str) -> httpx.Response:
    return httpx.Response(503, headers={"content-encoding": coding})


@pytest.mark.parametrize(
    ("coding", "raw"),
    [
        pytest.param("gzip", gzip.compress(QUOTA), id="gzip"),
        pytest.param("deflate", zlib.compress(QUOTA), id="deflate-zlib"),
        pytest.param("Deflate", zlib.compress(QUOTA)[2:-4], id="deflate-raw"),
        pytest.param("deflate, gzip", gzip.compress(zlib.compress(QUOTA)), id="stacked"),
        pytest.param("identity", QUOTA, id="identity"),
    ],
)
def test_the_codings_httpx_decodes_are_inflated(coding: str, raw: bytes) -> None:
    """gzip and deflate (zlib-wrapped or raw), alone or stacked, give the body httpx gives."""
    assert httpx.Response(503, headers={"content-encoding": coding}, content=raw).read() == QUOTA
    assert decoded(response(coding), raw, ERROR_BODY_LIMIT) == QUOTA


def test_a_bomb_is_inflated_only_to_the_limit() -> None:
    """A 64 MiB bomb gives its first ``limit`` bytes: never more is inflated."""
    raw = bomb(64 * 1024 * 1024)
    assert decoded(response("gzip"), raw, ERROR_BODY_LIMIT) == bytes(ERROR_BODY_LIMIT)
    assert decoded(response("gzip"), raw, 10) == bytes(10)
    stacked = gzip.compress(raw)
    assert decoded(response("gzip, gzip"), stacked, ERROR_BODY_LIMIT) == bytes(ERROR_BODY_LIMIT)


def test_a_bomb_costs_no_more_memory_than_the_limit() -> None:
    """Inflating a 64 MiB bomb allocates a few times ``limit`` bytes, not the bomb."""
    raw = bomb(64 * 1024 * 1024)
    tracemalloc.start()
    try:
        body = decoded(response("gzip"), raw, ERROR_BODY_LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert body == bytes(ERROR_BODY_LIMIT)
    # zlib's window and output blocks, the result: about 4 x limit; unbounded, over 100 MiB.
    assert peak < 8 * ERROR_BODY_LIMIT


def test_a_body_cut_short_gives_what_its_start_inflates_to() -> None:
    """The start of a longer gzip body (all seawall reads) gives the start of the text."""
    raw = gzip.compress(LONG)
    start = decoded(response("gzip"), raw[: len(raw) // 2], len(LONG))
    assert start is not None
    assert 0 < len(start) < len(LONG)
    assert LONG.startswith(start)


@pytest.mark.parametrize(
    ("coding", "raw"),
    [
        pytest.param("br", b"\x1b\x03\x00\xf8\xa5\x80", id="br"),
        pytest.param("zstd", b"(\xb5/\xfd\x00X!\x00\x00x", id="zstd"),
        pytest.param("gzip", b"not gzip at all", id="not-gzip"),
        pytest.param("deflate", b"\xff\xff not deflate", id="not-deflate"),
        pytest.param(
            "gzip, gzip, gzip",
            gzip.compress(gzip.compress(gzip.compress(QUOTA))),
            id="three-stacked",
        ),
    ],
)
def test_what_cannot_be_inflated_within_the_limit_is_not_given(coding: str, raw: bytes) -> None:
    """br and zstd (their decoders cannot be bounded), bad bytes and more than two
    stacked codings give no body: the response is classified without it."""
    assert decoded(response(coding), raw, ERROR_BODY_LIMIT) is None
