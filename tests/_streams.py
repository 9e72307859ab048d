"""An SSE upstream on 127.0.0.1 that sends part of an LLM stream and holds it open, for the
tests of streams left before their end (``test_streams_left_early*.py``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from aiohttp import web

MODEL = "gpt-4o"
CLAUDE = "claude-3-5-sonnet-latest"


def sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def chat_chunk(text: str, model: str | None = MODEL) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
    chunk: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "choices": [choice]}
    if model is not None:
        chunk["model"] = model
    return sse(chunk)


CHAT_USAGE = sse(
    {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": MODEL,
        "choices": [],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27},
    }
)
DONE = b"data: [DONE]\n\n"

#: Anthropic's first event: the input tokens (and one output token) before any text.
MESSAGE_START = sse(
    {
        "type": "message_start",
        "message": {
            "id": "msg",
            "type": "message",
            "role": "assistant",
            "model": CLAUDE,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 1000, "output_tokens": 1},
        },
    },
    "message_start",
)
BLOCK_START = sse(
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    "content_block_start",
)


def text_delta(text: str) -> bytes:
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": text},
    }
    return sse(delta, "content_block_delta")


@attrs.define
class Script:
    """What the upstream sends: ``before``, then ``end``: ``"eof"`` (the rest and the end),
    ``"hold"`` (nothing more until the test ends) or ``"break"`` (the connection cut)."""

    before: list[bytes] = attrs.Factory(list)
    end: str = "hold"
    rest: list[bytes] = attrs.Factory(list)


@attrs.define
class Upstream:
    """The app's state: the script, whether ``before`` was sent, and the end of holds."""

    script: Script = attrs.Factory(Script)
    sent: asyncio.Event = attrs.Factory(asyncio.Event)
    release: asyncio.Event = attrs.Factory(asyncio.Event)
    hits: int = 0


UPSTREAM = web.AppKey("upstream", Upstream)


async def _stream(request: web.Request) -> web.StreamResponse:
    up = request.app[UPSTREAM]
    up.hits += 1
    await request.read()
    script = up.script
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for part in script.before:
        await resp.write(part)
    up.sent.set()
    if script.end == "break":
        assert request.transport is not None
        request.transport.close()  # a chunked body that never ends: the client's read fails
        return resp
    if script.end == "hold":
        await up.release.wait()
    for part in script.rest:
        await resp.write(part)
    await resp.write_eof()
    return resp


async def _pong(_request: web.Request) -> web.StreamResponse:
    return web.Response(text="pong")


def app(up: Upstream) -> web.Application:
    application = web.Application()
    application[UPSTREAM] = up
    application.router.add_post("/v1/chat/completions", _stream)
    application.router.add_post("/v1/messages", _stream)
    application.router.add_post("/v1/responses", _stream)
    application.router.add_get("/ping", _pong)
    return application


@pytest.fixture
async def upstream(aiohttp_server: Any) -> AsyncIterator[tuple[Upstream, str]]:
    """This upstream on 127.0.0.1 (for a module to import): its state and base URL; its
    holds end with the test."""
    up = Upstream()
    server = await aiohttp_server(app(up))
    yield up, f"http://127.0.0.1:{server.port}"
    up.release.set()


def entry(costs: Any, model: str) -> Any:
    """The one key's totals for ``model`` (there is one key in these tests)."""
    (key,) = costs["keys"].values()
    return key["models"][model]


#: More than a replaying reader takes before its pump parks (2 x 64 KiB).
FILLER = [chat_chunk("x" * 4000) for _ in range(40)]
