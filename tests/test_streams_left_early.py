"""A streamed LLM answer is counted once however it ends, through the aiohttp middleware:
read whole, released or closed before its end, left inside ``async with``, broken by the
upstream, its reading task cancelled, dropped with its pump parked or running. Before,
only a stream read to its end with its usage was counted: one left early cost tokens
that ``sw.costs()`` never showed."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

import seawall

from ._streams import (
    CHAT_USAGE,
    CLAUDE,
    DONE,
    FILLER,
    MESSAGE_START,
    MODEL,
    Script,
    chat_chunk,
    entry,
    text_delta,
    upstream,
)

__all__ = ["upstream"]  # the fixture, used here

UNKNOWN = "(unknown)"


@pytest.fixture
def make_sw() -> Callable[..., seawall.Seawall]:
    def make(**policy: Any) -> seawall.Seawall:
        routes = {"127.0.0.1": seawall.Policy.for_llm(**policy)}
        return seawall.Seawall(routes=routes, entrypoints=False)

    return make


async def _first_line(resp: aiohttp.ClientResponse) -> bytes:
    return await resp.content.readline()


async def _ask(
    sw: seawall.Seawall,
    url: str,
    body: dict[str, Any],
    read: Callable[[aiohttp.ClientResponse], Awaitable[object]],
) -> None:
    """POST ``body`` through ``sw``, ``read`` some of the answer, leave ``async with``."""
    async with sw.session() as session, session.post(url, json=body) as resp:
        await read(resp)


async def test_a_stream_read_whole_then_closed_is_one_priced_call(upstream, make_sw) -> None:
    """Read to its end and then released: one call, priced from its usage, not two."""
    up, url = upstream
    up.script = Script([chat_chunk("hi"), CHAT_USAGE, DONE], end="eof")
    sw = make_sw()

    async def read_then_close(resp: aiohttp.ClientResponse) -> None:
        await resp.read()
        resp.close()

    await _ask(sw, url + "/v1/chat/completions", {"model": MODEL}, read_then_close)
    found = entry(sw.costs(), MODEL)
    assert (found["calls"], found["unpriced_calls"], found["output_tokens"]) == (1, 0, 7)


async def test_a_stream_read_whole_without_usage_is_an_unpriced_call(upstream, make_sw) -> None:
    """An OpenAI stream without ``include_usage`` read to its end: a call of its model whose
    cost is unknown (before: not counted at all)."""
    up, url = upstream
    up.script = Script([chat_chunk("hi"), DONE], end="eof")
    sw = make_sw()
    await _ask(sw, url + "/v1/chat/completions", {"model": MODEL}, lambda resp: resp.read())
    found = entry(sw.costs(), MODEL)
    assert (found["calls"], found["unpriced_calls"]) == (1, 1)


@pytest.mark.parametrize("how", ["release", "close", "async with"])
async def test_a_stream_left_by_the_caller_is_one_unpriced_call(upstream, make_sw, how) -> None:
    """Released, closed, or left inside ``async with`` after its first chunk ("stop
    generating"): one call of the model seen, its cost unknown; closing again adds none."""
    up, url = upstream
    up.script = Script([chat_chunk("hel"), chat_chunk("lo")])
    sw = make_sw()
    async with sw.session() as session:
        if how == "async with":
            async with session.post(url + "/v1/chat/completions", json={}) as resp:
                assert b"hel" in await _first_line(resp)
        else:
            resp = await session.post(url + "/v1/chat/completions", json={})
            assert b"hel" in await _first_line(resp)
            getattr(resp, how)()
        assert sw.costs()["calls"] == 1
        resp.close()
        resp.release()
    found = entry(sw.costs(), MODEL)
    assert (found["calls"], found["unpriced_calls"], found["cost_usd"]) == (1, 1, Decimal(0))


async def test_an_anthropic_stream_left_early_prices_its_input(upstream, make_sw) -> None:
    """Left after ``message_start``: a call priced from the input tokens it names (a lower
    bound: the output so far is not known)."""
    up, url = upstream
    up.script = Script([MESSAGE_START, text_delta("Hel")])
    sw = make_sw()
    await _ask(sw, url + "/v1/messages", {}, lambda resp: resp.content.readuntil(b"Hel"))
    found = entry(sw.costs(), CLAUDE)
    assert (found["calls"], found["unpriced_calls"], found["input_tokens"]) == (1, 0, 1000)
    assert found["cost_usd"] > 0


async def test_a_stream_the_upstream_breaks_is_one_call(upstream, make_sw) -> None:
    """The upstream cuts the connection mid-body: the caller's read fails, the call is
    counted once (and not again when the caller then closes)."""
    up, url = upstream
    up.script = Script([chat_chunk("hi")], end="break")
    sw = make_sw()
    async with sw.session() as session:
        async with session.post(url + "/v1/chat/completions", json={}) as resp:
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
        resp.close()
    found = entry(sw.costs(), MODEL)
    assert (found["calls"], found["unpriced_calls"]) == (1, 1)


async def test_a_stream_whose_reader_is_cancelled_is_one_call(upstream, make_sw) -> None:
    """The task reading the stream is cancelled (a client gone): counted once."""
    up, url = upstream
    up.script = Script([chat_chunk("hi")])
    sw = make_sw()
    reading = asyncio.Event()

    async def read(session: aiohttp.ClientSession) -> None:
        async with session.post(url + "/v1/chat/completions", json={}) as resp:
            await _first_line(resp)
            reading.set()
            await resp.read()  # the rest never comes

    async with sw.session() as session:
        task = asyncio.create_task(read(session))
        await reading.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sw.costs()["calls"] == 1
    assert entry(sw.costs(), MODEL)["calls"] == 1


async def test_a_dropped_stream_with_its_pump_parked_is_counted(upstream, make_sw) -> None:
    """Dropped unread and unreleased once its pump parked (the reader full): aiohttp keeps
    the response until its body ends (or its connection closes), then the reader's
    finalizer counts it, once, with what the caller was handed (the rest, its usage
    included, stayed in the socket: an unpriced call)."""
    up, url = upstream
    up.script = Script(FILLER, rest=[CHAT_USAGE, DONE])
    sw = make_sw()
    # One connection: the next request waits until aiohttp released the first at its end.
    async with sw.session(connector=aiohttp.TCPConnector(limit=1)) as session:
        resp = await session.post(url + "/v1/chat/completions", json={})
        pump = resp.content.pump  # type: ignore[attr-defined]
        assert pump is not None
        await pump  # parked: it ends when the reader is full
        assert not resp.content.at_eof()
        del resp, pump
        gc.collect()
        assert sw.costs()["calls"] == 0  # still held by its connection, as without seawall
        up.release.set()
        async with session.get(url + "/ping") as pong:
            assert await pong.text() == "pong"
        gc.collect()
        assert sw.costs()["calls"] == 1
        gc.collect()
    found = entry(sw.costs(), MODEL)
    assert (found["calls"], found["unpriced_calls"]) == (1, 1)


async def test_a_dropped_stream_still_pumping_is_counted_at_its_end(upstream, make_sw) -> None:
    """Dropped while its pump still takes the body in (the reader not full): the pump
    shows every chunk, so the stream is priced from its usage at its end, once."""
    up, url = upstream
    up.script = Script([chat_chunk("hi")], rest=[CHAT_USAGE, DONE])
    sw = make_sw()
    async with sw.session() as session:
        resp = await session.post(url + "/v1/chat/completions", json={})
        await _first_line(resp)
        pump = resp.content.pump  # type: ignore[attr-defined]
        assert pump is not None
        del resp
        gc.collect()
        up.release.set()
        await pump
        gc.collect()
    found = entry(sw.costs(), MODEL)
    assert (found["calls"], found["unpriced_calls"], found["output_tokens"]) == (1, 0, 7)


async def test_a_stream_that_names_no_model_is_counted_unknown(upstream, make_sw) -> None:
    """No event named a model: an unpriced call under ``(unknown)``."""
    up, url = upstream
    up.script = Script([chat_chunk("hi", model=None)])
    sw = make_sw()
    await _ask(sw, url + "/v1/chat/completions", {"model": MODEL}, _first_line)
    found = entry(sw.costs(), UNKNOWN)
    assert (found["calls"], found["unpriced_calls"]) == (1, 1)


async def test_a_model_keyed_route_counts_the_requested_model(upstream, make_sw) -> None:
    """With ``key="model"``, a stream that named no model counts under the request's."""
    up, url = upstream
    up.script = Script([chat_chunk("hi", model=None)])
    sw = make_sw(key="model")
    await _ask(sw, url + "/v1/chat/completions", {"model": "gpt-4.1"}, _first_line)
    (key,) = sw.costs()["keys"]
    assert key.endswith("#gpt-4.1")
    found = entry(sw.costs(), "gpt-4.1")
    assert (found["calls"], found["unpriced_calls"]) == (1, 1)


async def test_a_stream_whose_only_event_is_huge_is_one_call(upstream, make_sw) -> None:
    """One event of 2 MiB, never ended: the scan stops at 1 MiB without holding it, and the
    stream left is one unpriced call."""
    up, url = upstream
    up.script = Script([b'data: {"model": "gpt-4o", "x": "' + b"y" * (2 << 20)])
    sw = make_sw()
    await _ask(sw, url + "/v1/chat/completions", {}, lambda resp: resp.content.readexactly(2 << 20))
    found = entry(sw.costs(), UNKNOWN)
    assert (found["calls"], found["unpriced_calls"]) == (1, 1)


async def test_a_caller_closing_in_the_middle_of_a_line_is_one_call(upstream, make_sw) -> None:
    """The caller closes with half a line read: the events before it count (the model),
    the half line does not, and nothing raises into the caller."""
    up, url = upstream
    half = chat_chunk("second")[:20]
    up.script = Script([chat_chunk("first"), half])
    sw = make_sw()
    async with sw.session() as session:
        resp = await session.post(url + "/v1/chat/completions", json={})
        line = await _first_line(resp)
        assert b"first" in line
        await resp.content.readexactly(len(half) + 1)  # the blank line, the half line
        resp.close()
    found = entry(sw.costs(), MODEL)
    assert (found["calls"], found["unpriced_calls"]) == (1, 1)
