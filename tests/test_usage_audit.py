"""Reading usage costs the event loop and memory in proportion to what it keeps.

Found by the audit of LLM usage and costs (docs/architecture.md): a long SSE
line read in small pieces, a stream's usage fields of a megabyte each, and
JSON answers that cannot be priced (embeddings) decoded all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import decimal
import gc
import json
import logging
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from httpx_aiohttp.httpx2 import AiohttpTransport
from hypothesis import given
from hypothesis import strategies as st

import seawall
from seawall import costs
from seawall.costs import MAX_TOKENS
from seawall.llm import usage as usage_module
from seawall.testing import FakeProvider

from .conftest import Upstream

pytest.importorskip("genai_prices")

_USAGE_EVENT = {
    "model": "gpt-4o",
    "choices": [],
    "usage": {
        "prompt_tokens": 30,
        "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 10, "audio_tokens": 0},
    },
}


def _line(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def test_a_long_line_read_in_small_pieces_takes_linear_time() -> None:
    """A line of almost 1 MiB in 64-byte reads is scanned in well under a second (it took
    ~7 s of the event loop: each read copied the whole line so far), and the usage after
    it is still read."""
    done: list[costs.Usage] = []
    reader = costs.StreamUsage(done.append)
    long = b'data: {"model": "gpt-4o", "text": "' + b"a" * (1024 * 1024 - 100) + b'"}\n'
    stream = long + _line(_USAGE_EVENT)
    started = time.process_time()
    for start in range(0, len(stream), 64):  # bounded: 16,400 reads
        reader(stream[start : start + 64])
    reader(b"")
    assert time.process_time() - started < 1.0
    (usage,) = done
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (30, 5, 10)


_FILLER = st.sampled_from(
    [
        b": keep-alive\n\n",
        b"event: ping\n\n",
        b'data: {"model": "gpt-4o", "choices": [{"delta": {"content": "hi"}}], "usage": null}\n\n',
        b"data: [DONE]\n\n",
        b"data: not json\r\n\r\n",
    ]
)


@given(
    before=st.lists(_FILLER, max_size=6),
    after=st.lists(_FILLER, max_size=3),
    cuts=st.lists(st.integers(0, 2_000), max_size=12),
    tokens=st.integers(0, 1_000),
)
def test_a_stream_cut_anywhere_gives_the_usage_read_whole(
    before: list[bytes], after: list[bytes], cuts: list[int], tokens: int
) -> None:
    """However the stream is split into reads, the usage found is the one read in one go."""
    event = {**_USAGE_EVENT, "usage": {"prompt_tokens": tokens, "completion_tokens": 7}}
    stream = b"".join([*before, _line(event), *after])

    def read(pieces: list[bytes]) -> list[costs.Usage]:
        done: list[costs.Usage] = []
        reader = costs.StreamUsage(done.append)
        for piece in pieces:
            if piece:
                reader(piece)
        reader(b"")
        return done

    points = sorted({min(cut, len(stream)) for cut in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    whole = read([stream])
    assert read(pieces) == whole
    assert [(u.input_tokens, u.output_tokens) for u in whole] == [(tokens, 7)]


def test_a_stream_cannot_make_the_usage_reader_hold_megabytes() -> None:
    """Usage fields holding lists or big objects are dropped as they come: 60 events of
    0.8 MB each (kept whole, they held ~190 MB until the stream ended) leave a few MB."""
    done: list[costs.Usage] = []
    reader = costs.StreamUsage(done.append)
    values = ",".join(f"{n}.5" for n in range(100_000))
    tracemalloc.start()
    try:
        for number in range(60):  # bounded
            big = {f"n{k}": k + 0.5 for k in range(1_000)}
            line = f'data: {{"model": "gpt-4o", "usage": {{"f{number}": [{values}], '
            line += f'"g{number}": {json.dumps(big)}}}}}\n'
            reader(line.encode())
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 8_000_000
    reader(_line(_USAGE_EVENT))
    reader(b"")
    (usage,) = done
    assert usage.cache_read_tokens == 10  # a small object of counts is still read


def test_anthropic_stream_fields_are_all_kept() -> None:
    """The fields Anthropic streams (counts, a tier name, flat objects of counts) are read."""
    done: list[costs.Usage] = []
    reader = costs.StreamUsage(done.append)
    start = {
        "type": "message_start",
        "message": {
            "model": "claude-sonnet-4-5",
            "usage": {
                "input_tokens": 10,
                "cache_read_input_tokens": 20,
                "cache_creation_input_tokens": 4,
                "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 0},
                "output_tokens": 1,
                "service_tier": "standard",
            },
        },
    }
    delta = {"type": "message_delta", "usage": {"output_tokens": 9}}
    reader(b"event: message_start\n" + _line(start) + b"event: message_delta\n" + _line(delta))
    reader(b"")
    (usage,) = done
    assert (usage.input_tokens, usage.output_tokens) == (34, 9)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (20, 4)


def _embeddings(count: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": n, "embedding": [0.001 * k for k in range(1536)]}
            for n in range(count)
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8 * count, "total_tokens": 8 * count},
    }


def _decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each body seawall's usage reader decodes (a spy on its ``json``)."""
    sizes: list[int] = []

    def loads(body: bytes | str) -> Any:
        sizes.append(len(body))
        return json.loads(body)

    monkeypatch.setattr(usage_module, "json", SimpleNamespace(loads=loads))
    return sizes


async def test_answers_that_cannot_be_priced_are_not_decoded(
    upstream: tuple[Upstream, Any],
    make_session: Callable[..., aiohttp.ClientSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An embeddings answer (usage without an output count, so never priced) reaches the
    openai SDK whole and is not decoded by seawall too (~75 ms of the event loop for
    3 MiB); a chat answer still is, and is priced."""
    decoded = _decodes(monkeypatch)
    up, server = upstream
    answer = _embeddings(40)

    async def embeddings(_request: web.Request) -> web.StreamResponse:
        return web.json_response(answer)

    async def chat(_request: web.Request) -> web.StreamResponse:
        return web.json_response({**_USAGE_EVENT, "object": "chat.completion"})

    up.then(embeddings, chat)
    sw = seawall.Seawall(routes={"127.0.0.1": seawall.Policy.for_llm()}, entrypoints=False)
    session = make_session(sw)
    http = openai.DefaultAioHttpClient(transport=AiohttpTransport(client=session))
    client = openai.AsyncOpenAI(
        base_url=str(server.make_url("/v1")), api_key="sk-test", max_retries=0, http_client=http
    )
    got = await client.embeddings.create(model="text-embedding-3-small", input=["a"] * 40)
    assert len(got.data) == 40
    assert got.data[3].embedding == answer["data"][3]["embedding"]
    assert decoded == []
    assert sw.costs()["calls"] == 0
    await client.chat.completions.create(model="gpt-4o", messages=[])
    assert len(decoded) == 1
    assert sw.costs()["calls"] == 1


# --- without the llm extra: the built-in table prices calls, as documented -----------


@pytest.fixture
def without_genai_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the ``llm`` extra were not installed: importing genai_prices fails."""
    for name in ("genai_prices", "genai_prices.data_snapshot"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize(
    ("path", "model", "stream"),
    [
        ("/v1/chat/completions", "gpt-4o", False),
        ("/v1/chat/completions", "gpt-4o", True),
        ("/v1/responses", "gpt-4o-mini", False),
        ("/v1/messages", "claude-sonnet-4-5", False),
        ("/v1/messages", "claude-sonnet-4-5", True),
    ],
)
async def test_calls_are_priced_from_the_built_in_table_without_the_extra(
    without_genai_prices: None, path: str, model: str, stream: bool
) -> None:
    """Without genai-prices, answers are still read and priced at the built-in table's
    rates (they were not read at all: every call went uncounted)."""
    async with FakeProvider() as fake:
        sw = seawall.Seawall(routes={"127.0.0.1": seawall.Policy.for_llm()}, entrypoints=False)
        body: dict[str, Any] = {"model": model, "stream": stream}
        if stream and path.endswith("completions"):
            body["stream_options"] = {"include_usage": True}
        async with sw.session() as session, session.post(fake.url + path, json=body) as resp:
            assert resp.status == 200
            await resp.read()
    report = sw.costs()
    assert report.calls == 1
    (entry,) = report.by_key.values()
    (found,) = entry.models.values()
    assert found.unpriced_calls == 0
    rates = costs.model_price(model)
    assert rates is not None
    assert rates.source == "built-in"
    usage = costs.Usage(
        model=model,
        provider=rates.provider or "",
        flavor="chat",
        input_tokens=found.input_tokens,
        output_tokens=found.output_tokens,
        cache_read_tokens=found.cache_read_tokens,
        cache_write_tokens=found.cache_write_tokens,
    )
    assert found.cost_usd == rates.cost(usage) > 0


_COUNT = st.one_of(st.none(), st.integers(0, 2 * MAX_TOKENS))


@given(
    shape=st.sampled_from(["chat", "responses", "anthropic"]),
    first=_COUNT,
    second=_COUNT,
    cached=_COUNT,
    written=_COUNT,
)
def test_the_built_in_reader_agrees_with_genai_prices(
    shape: str, first: int | None, second: int | None, cached: int | None, written: int | None
) -> None:
    """Whatever the counts, reading them without genai-prices gives what it gives."""
    usage: dict[str, Any]
    if shape == "chat":
        usage = {"prompt_tokens": first, "completion_tokens": second}
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    elif shape == "responses":
        usage = {"input_tokens": first, "output_tokens": second}
        usage["input_tokens_details"] = {"cached_tokens": cached}
    else:
        usage = {"input_tokens": first, "output_tokens": second}
        usage |= {"cache_read_input_tokens": cached, "cache_creation_input_tokens": written}
    answer = {"model": "gpt-4o", "usage": usage}
    shape_of = usage_module._shape(answer)
    assert shape_of is not None
    provider, flavor = shape_of
    with_database = usage_module._counts(answer, provider, flavor)
    built_in = usage_module._built_in_counts(usage, provider)
    if with_database is None or None in with_database:
        assert built_in is None or None in built_in
    else:
        assert built_in == [n or 0 for n in with_database]


# --- the caller's decimal context is not seawall's -----------------------------------


def _hostile_context(digits: int, trap_inexact: bool) -> decimal.Context:
    context = decimal.Context(prec=digits)
    if trap_inexact:
        context.traps[decimal.Inexact] = True
    return context


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_callers_decimal_context_neither_rounds_the_totals_nor_raises(
    stream: bool,
) -> None:
    """A call made under a decimal context of few digits, or with Inexact trapped (as
    money code sets), gets its answer, and the totals every caller shares stay exact
    (they were rounded to the caller's digits; with Inexact trapped, the successful
    answer was lost to a decimal.Inexact)."""
    async with FakeProvider() as fake:
        sw = seawall.Seawall(routes={"127.0.0.1": seawall.Policy.for_llm()}, entrypoints=False)
        body = {"model": "gpt-4o", "stream": stream, "stream_options": {"include_usage": True}}
        url = fake.url + "/v1/chat/completions"
        async with sw.session() as session:
            async with session.post(url, json=body) as resp:
                whole = await resp.read()
            one = sw.costs().cost_usd
            (key,) = sw.cost_tracker.by_key
            big = costs.Usage("gpt-4o", "openai", "chat", 1_234_567, 7_654)
            sw.cost_tracker.record(key, big)  # a total with many digits
            before = sw.costs().cost_usd
            for digits, trap in ((3, False), (6, True)):
                with decimal.localcontext(_hostile_context(digits, trap)):
                    async with session.post(url, json=body) as resp:
                        assert resp.status == 200
                        assert len(await resp.read()) == len(whole)
    assert one > 0
    assert sw.costs().cost_usd == before + 2 * one
    assert sw.costs().calls == 4


async def test_a_fault_in_counting_never_fails_the_answer(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Should counting a cost raise (a bug), the caller still gets its successful answer,
    and one warning says so."""

    def broken(self: costs.CostTracker, key: str, usage: costs.Usage) -> None:
        raise RuntimeError("a bug in counting")

    monkeypatch.setattr(costs.CostTracker, "record", broken)
    caplog.set_level(logging.DEBUG, logger="seawall.costs")
    async with FakeProvider() as fake:
        sw = seawall.Seawall(routes={"127.0.0.1": seawall.Policy.for_llm()}, entrypoints=False)
        async with sw.session() as session:
            for _ in range(3):  # bounded
                url = fake.url + "/v1/chat/completions"
                async with session.post(url, json={"model": "gpt-4o"}) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["usage"]["completion_tokens"] > 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "could not count the cost" in warnings[0].getMessage()
    assert sw.cost_tracker.faults == 3


# --- a stream the caller abandons -----------------------------------------------------


@pytest.mark.parametrize("finished", [True, False], ids=["sent-whole", "still-sending"])
async def test_an_abandoned_stream_leaves_no_task_behind(
    upstream: tuple[Upstream, Any],
    make_session: Callable[..., aiohttp.ClientSession],
    finished: bool,
) -> None:
    """A streamed answer the caller drops unread and unreleased (an SDK stream left in a
    broken-off loop) does not keep seawall's reading task and its buffers forever: the
    task ends once the response is collected (the body sent whole) or its connection
    closed, as aiohttp alone frees them; it waited for a reader that never came."""
    up, server = upstream
    line = b'data: {"model": "gpt-4o", "choices": [{"delta": {"content": "' + b"x" * 1000
    line += b'"}}]}\n\n'
    gate = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(150 if finished else 2_000):  # bounded: 150 KB, or 2 MB
            await response.write(line)
        if not finished:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(gate.wait(), 10)
        return response

    up.default = handler
    sw = seawall.Seawall(routes={"127.0.0.1": seawall.Policy.for_llm()}, entrypoints=False)
    session = make_session(sw)
    resp = await session.post(server.make_url("/v1/chat/completions"), json={})
    assert (await resp.content.readline()).startswith(b"data: ")
    pump = resp.content.pump  # type: ignore[attr-defined]
    assert pump is not None
    if finished:  # the rest arrives while nobody reads
        await asyncio.wait_for(_until_sent(resp), 10)
    # A response dropped mid-body is aiohttp's "Unclosed connection" ResourceWarning
    # when collected (the caller's mistake this test copies): expected here, and it
    # must be collected here, not in a later test where it would be that test's error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del resp
        if not finished:
            await session.close()
        gc.collect()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(pump), 10)
        assert pump.done()
        gate.set()
        gc.collect()  # what the ended pump let go of


async def _until_sent(resp: aiohttp.ClientResponse) -> None:
    """Until the original stream under ``resp``'s replaying reader has its end."""
    for _ in range(1_000):  # bounded
        if resp.connection is None:  # released at the body's end
            return
        await asyncio.sleep(0)
    raise AssertionError("the body never arrived whole")


_CHAT = {"object": "chat.completion", "usage": {"prompt_tokens": 3, "completion_tokens": 2}}


@given(
    st.text(max_size=40),
    st.sampled_from(
        # (then: the Arabic letter mark, the no-break space, a separator, a bidi mark)
        [
            *("\n", "\r", "\x1b[2J", "\x00", "\x7f", "\x9b", "\u202e", "\u200b", "\ufeff"),
            *("\u061c", "\u00a0", "\u2029", "\u200e"),
        ]
    ),
    st.text(max_size=40),
)
def test_a_model_name_with_control_or_bidi_characters_is_read_as_other(
    before: str, bad: str, after: str
) -> None:
    """Model names come from the upstream's answer and reach logs, events, ``/metrics`` and
    the CLI: a newline forges a log line, an escape sequence rewrites the reader's terminal,
    a bidi mark shows another name. Such a name is read as ``(other)`` (never priced)."""
    usage = usage_module.parse_usage({**_CHAT, "model": before + bad + after})
    assert usage is not None
    assert usage.model == usage_module.LONG_MODEL


@given(st.from_regex(r"\A[A-Za-z0-9._:/@+ -]{1,100}\Z"))
def test_a_printable_model_name_is_kept(name: str) -> None:
    usage = usage_module.parse_usage({**_CHAT, "model": name})
    assert usage is not None
    assert usage.model == name
