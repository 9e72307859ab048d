"""A streamed LLM answer is counted once however it ends, through the httpx transports
(async and sync) and the real SDKs: closed before its end, broken by the upstream, its
reading task cancelled, dropped unclosed. Before, a stream closed early was counted only
when its usage had already passed (Anthropic's ``message_start``), one broken or dropped
never; the SDK cases over aiohttp are here too."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import openai
import pytest
from httpx_aiohttp.httpx2 import AiohttpTransport

import seawall

from ._streams import (
    BLOCK_START,
    CHAT_USAGE,
    CLAUDE,
    DONE,
    MESSAGE_START,
    MODEL,
    Script,
    chat_chunk,
    entry,
    text_delta,
    upstream,
)

__all__ = ["upstream"]  # the fixture, used here

CHAT = "/v1/chat/completions"


@pytest.fixture
def sw() -> seawall.Seawall:
    return seawall.Seawall(routes={"127.0.0.1": seawall.Policy.for_llm()}, entrypoints=False)


def _one_unpriced_call(sw: seawall.Seawall, model: str = MODEL) -> None:
    found = entry(sw.costs(), model)
    assert (found["calls"], found["unpriced_calls"], found["cost_usd"]) == (1, 1, Decimal(0))


# --- async ---------------------------------------------------------------------------


async def test_an_async_stream_closed_early_is_one_call(upstream, sw) -> None:
    """``client.stream`` left after the first line (``aclose``): one call; a second
    ``aclose`` adds none."""
    up, url = upstream
    up.script = Script([chat_chunk("hel"), chat_chunk("lo")])
    async with httpx.AsyncClient(transport=sw.httpx_transport()) as client:
        async with client.stream("POST", url + CHAT, json={}) as resp:
            async for line in resp.aiter_lines():
                assert "hel" in line
                break
        await resp.aclose()
    _one_unpriced_call(sw)


async def test_an_async_stream_read_whole_is_one_priced_call(upstream, sw) -> None:
    """Read to its end, then closed: one call priced from its usage."""
    up, url = upstream
    up.script = Script([chat_chunk("hi"), CHAT_USAGE, DONE], end="eof")
    async with httpx.AsyncClient(transport=sw.httpx_transport()) as client:
        async with client.stream("POST", url + CHAT, json={}) as resp:
            await resp.aread()
        await resp.aclose()
    found = entry(sw.costs(), MODEL)
    assert (found["calls"], found["unpriced_calls"], found["output_tokens"]) == (1, 0, 7)


async def test_an_async_stream_the_upstream_breaks_is_one_call(upstream, sw) -> None:
    """The upstream cuts the body: the caller's read fails and the call is counted."""
    up, url = upstream
    up.script = Script([chat_chunk("hi")], end="break")
    async with httpx.AsyncClient(transport=sw.httpx_transport()) as client:
        resp = await client.send(client.build_request("POST", url + CHAT, json={}), stream=True)
        with pytest.raises(httpx.RemoteProtocolError):
            await resp.aread()
        assert sw.costs()["calls"] == 1
        await resp.aclose()
    _one_unpriced_call(sw)


async def test_an_async_stream_whose_reader_is_cancelled_is_one_call(upstream, sw) -> None:
    """The task reading the stream is cancelled mid-body: counted once."""
    up, url = upstream
    up.script = Script([chat_chunk("hi")])
    reading = asyncio.Event()

    async def read(client: httpx.AsyncClient) -> None:
        resp = await client.send(client.build_request("POST", url + CHAT, json={}), stream=True)
        async for _line in resp.aiter_lines():
            reading.set()

    async with httpx.AsyncClient(transport=sw.httpx_transport()) as client:
        task = asyncio.create_task(read(client))
        await reading.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sw.costs()["calls"] == 1
    gc.collect()
    _one_unpriced_call(sw)


async def test_an_async_stream_dropped_unclosed_is_one_call(upstream, sw) -> None:
    """A streamed response dropped without being read or closed: counted when collected."""
    up, url = upstream
    up.script = Script([MESSAGE_START])
    async with httpx.AsyncClient(transport=sw.httpx_transport()) as client:
        resp = await client.send(client.build_request("POST", url + "/v1/messages"), stream=True)
        assert sw.costs()["calls"] == 0
        del resp
        gc.collect()
        assert sw.costs()["calls"] == 1
    _one_unpriced_call(sw, "(unknown)")


# --- sync (the client in a thread while the loop serves the upstream) -----------------


def _sync(sw: seawall.Seawall, work: Callable[[httpx.Client], None]) -> Any:
    def run() -> None:
        with httpx.Client(transport=sw.httpx_transport(sync=True)) as client:
            work(client)

    return asyncio.to_thread(run)


async def test_a_sync_stream_closed_early_is_one_call(upstream, sw) -> None:
    """The sync transport: ``client.stream`` left after the first line."""
    up, url = upstream
    up.script = Script([chat_chunk("hel"), chat_chunk("lo")])

    def work(client: httpx.Client) -> None:
        with client.stream("POST", url + CHAT, json={}) as resp:
            for line in resp.iter_lines():
                assert "hel" in line
                break
        resp.close()

    await _sync(sw, work)
    _one_unpriced_call(sw)


async def test_a_sync_stream_the_upstream_breaks_is_one_call(upstream, sw) -> None:
    """The sync transport: the body cut by the upstream."""
    up, url = upstream
    up.script = Script([chat_chunk("hi")], end="break")

    def work(client: httpx.Client) -> None:
        resp = client.send(client.build_request("POST", url + CHAT, json={}), stream=True)
        with pytest.raises(httpx.RemoteProtocolError):
            resp.read()
        assert sw.costs()["calls"] == 1
        resp.close()

    await _sync(sw, work)
    _one_unpriced_call(sw)


async def test_a_sync_stream_dropped_half_read_is_one_call(upstream, sw) -> None:
    """The sync transport: a stream half read and dropped unclosed (its iterator too)."""
    up, url = upstream
    up.script = Script([chat_chunk("hi")])

    def work(client: httpx.Client) -> None:
        resp = client.send(client.build_request("POST", url + CHAT, json={}), stream=True)
        lines = resp.iter_lines()
        assert "hi" in next(lines)
        del resp, lines
        gc.collect()
        assert sw.costs()["calls"] == 1

    await _sync(sw, work)
    _one_unpriced_call(sw)


# --- the SDKs -------------------------------------------------------------------------


async def test_the_openai_sdk_stream_closed_early_is_one_call(upstream, sw) -> None:
    """OpenAI's ``AsyncStream`` over the httpx transport, closed after its first chunk."""
    up, url = upstream
    up.script = Script([chat_chunk("hel"), chat_chunk("lo")])
    http = httpx.AsyncClient(transport=sw.httpx_transport())
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-test", http_client=http)
    async with client:
        stream = await client.chat.completions.create(model=MODEL, messages=[], stream=True)
        async for chunk in stream:
            assert chunk.choices[0].delta.content == "hel"
            break
        await stream.close()
    _one_unpriced_call(sw)


async def test_the_openai_sync_sdk_stream_closed_early_is_one_call(upstream, sw) -> None:
    """OpenAI's sync ``Stream`` over the sync transport, closed after its first chunk."""
    up, url = upstream
    up.script = Script([chat_chunk("hel"), chat_chunk("lo")])

    def work(http: httpx.Client) -> None:
        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-test", http_client=http)
        stream = client.chat.completions.create(model=MODEL, messages=[], stream=True)
        for _chunk in stream:
            break
        stream.close()

    await _sync(sw, work)
    _one_unpriced_call(sw)


async def test_the_anthropic_sdk_stream_left_early_over_aiohttp(upstream, sw) -> None:
    """Anthropic's ``messages.stream`` over aiohttp with the middleware, left after the
    first text: one call priced from the input tokens of ``message_start`` (a lower
    bound)."""
    up, url = upstream
    up.script = Script([MESSAGE_START, BLOCK_START, text_delta("Hel")])
    async with sw.session() as session:
        http = anthropic.DefaultAioHttpClient(transport=AiohttpTransport(client=session))
        client = anthropic.AsyncAnthropic(
            base_url=url, api_key="sk-ant-test", max_retries=0, http_client=http
        )
        async with client.messages.stream(model=CLAUDE, max_tokens=10, messages=[]) as stream:
            async for event in stream:
                if event.type == "content_block_delta":
                    break
    found = entry(sw.costs(), CLAUDE)
    assert (found["calls"], found["unpriced_calls"], found["input_tokens"]) == (1, 0, 1000)
    assert found["cost_usd"] > 0
