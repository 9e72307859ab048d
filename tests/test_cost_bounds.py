"""Cost tracking is bounded: model entries per key, absurd usage, and the body it reads."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import seawall
from seawall import _body, costs
from seawall.costs import MAX_MODELS_PER_KEY, OTHER

from .conftest import Upstream

pytest.importorskip("genai_prices")


def _answer(model: str, prompt_tokens: Any = 10) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 2, "total_tokens": 12},
    }


def _llm_seawall() -> seawall.Seawall:
    policy = seawall.Policy(llm=True)
    return seawall.Seawall(routes={"127.0.0.1": policy}, entrypoints=False)


async def test_upstream_chosen_model_names_are_bounded_per_key(
    upstream: tuple[Upstream, Any], make_session: Callable[..., aiohttp.ClientSession]
) -> None:
    """A new model name in every answer: at most MAX_MODELS_PER_KEY entries, then OTHER."""
    up, server = upstream
    names = iter(f"model-{n}" for n in range(10_000))

    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.json_response(_answer(next(names)))

    up.default = handler
    sw = _llm_seawall()
    session = make_session(sw)
    calls = 3 * MAX_MODELS_PER_KEY
    for _ in range(calls):
        async with session.post(server.make_url("/v1/chat/completions"), json={}) as resp:
            assert (await resp.json())["usage"]["completion_tokens"] == 2  # the body is whole
    (entry,) = sw.costs()["keys"].values()
    assert len(entry["models"]) == MAX_MODELS_PER_KEY + 1
    assert entry["models"][OTHER]["calls"] == calls - MAX_MODELS_PER_KEY
    assert entry["calls"] == calls  # every call is still counted
    assert entry["models"]["model-0"]["input_tokens"] == 10


@pytest.mark.parametrize("tokens", [1e300, -5, 2.5, "many", 10**30])
async def test_absurd_usage_is_not_priced(
    upstream: tuple[Upstream, Any],
    make_session: Callable[..., aiohttp.ClientSession],
    tokens: Any,
) -> None:
    """1e300 tokens (or negative, fractional, textual): rejected, not priced; the caller is fine."""
    up, server = upstream

    async def absurd(_request: web.Request) -> web.StreamResponse:
        return web.json_response(_answer("gpt-4o", tokens))

    async def sane(_request: web.Request) -> web.StreamResponse:
        return web.json_response(_answer("gpt-4o"))

    up.then(absurd, sane)
    sw = _llm_seawall()
    session = make_session(sw)
    for _ in range(2):
        async with session.post(server.make_url("/v1/chat/completions"), json={}) as resp:
            assert resp.status == 200
            await resp.read()
    report = sw.costs()
    assert report["calls"] == 1  # only the sane answer
    assert report["input_tokens"] == 10


# --- reading the body: never more than the limit held ----------------------------

_LIMIT = 256 * 1024


@pytest.mark.parametrize("encoding", ["chunked", "gzip"])
async def test_peek_holds_at_most_the_limit_and_the_caller_gets_everything(
    upstream: tuple[Upstream, Any], encoding: str
) -> None:
    """A chunked or gzip body 4x the limit: the reader holds at most the limit; body intact."""
    up, server = upstream
    payload = json.dumps({"model": "gpt-4o", "pad": "x" * (4 * _LIMIT)}).encode()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        data = payload
        if encoding == "gzip":
            data = gzip.compress(payload)
            resp.headers["Content-Encoding"] = "gzip"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for start in range(0, len(data), 100_000):  # bounded: a few dozen writes
            await resp.write(data[start : start + 100_000])
        await resp.write_eof()
        return resp

    up.default = handler
    async with aiohttp.ClientSession() as session, session.get(server.make_url("/")) as resp:
        peeked = await _body.peek_body(resp, _LIMIT)
        # What the reader took from the stream is what it feeds the caller's
        # reader before its pump starts: at most the limit, and one byte
        # to know that more follows.
        taken = resp.content.total_bytes
        assert peeked is not None
        assert len(peeked) == _LIMIT
        assert taken <= _LIMIT + 1
        first = await resp.content.read(_LIMIT)
        assert first is peeked  # held once: the caller replays the very same bytes
        rest = await resp.read()
    body = first + rest
    assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()


def test_decompressing_for_costs_is_bounded() -> None:
    """A gzip answer (no auto-decompression) is inflated only within the limit, all told."""
    big = json.dumps(_answer("gpt-4o") | {"pad": "x" * costs.SUCCESS_BODY_LIMIT}).encode()
    compressed = gzip.compress(big)
    inflated = costs._decompress(compressed)
    assert len(compressed) + len(inflated) <= costs.SUCCESS_BODY_LIMIT
    assert costs.usage_from_json(compressed) is None  # too big to price, like a plain one
    small = json.dumps(_answer("gpt-4o")).encode()
    usage = costs.usage_from_json(gzip.compress(small))
    assert usage is not None
    assert usage.input_tokens == 10


def test_a_stream_cannot_grow_the_usage_it_gathers() -> None:
    """An SSE stream naming ever new usage fields stops being read for usage."""
    done: list[costs.Usage] = []
    reader = costs.StreamUsage(done.append)
    for number in range(100):  # bounded: 100 events of 10 new fields each
        fields = {f"field_{number}_{n}": n for n in range(10)}
        event = {"model": "gpt-4o", "usage": {"prompt_tokens": 1, **fields}}
        reader(b"data: " + json.dumps(event).encode() + b"\n\n")
    reader(b"")
    assert done == []
    assert len(reader._usage) <= 64 + 10


# --- hostile usage: names and counts the upstream chooses ---------------------------


class _Costs:
    """Records the cost events."""

    def __init__(self) -> None:
        self.models: list[str] = []

    @seawall.hookimpl
    def seawall_event(self, event: Any) -> None:
        if event.kind == "cost":
            self.models.append(event.model)


def _lookups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of each model name the price database is asked about (a spy)."""
    import genai_prices

    asked: list[int] = []
    real = genai_prices.calc_price

    def spy(usage: Any, model_ref: str, **kwargs: Any) -> Any:
        asked.append(len(model_ref))
        return real(usage, model_ref, **kwargs)

    monkeypatch.setattr(genai_prices, "calc_price", spy)
    return asked


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
async def test_a_huge_model_name_is_not_looked_up_nor_carried(
    upstream: tuple[Upstream, Any],
    make_session: Callable[..., aiohttp.ClientSession],
    monkeypatch: pytest.MonkeyPatch,
    streamed: bool,
) -> None:
    """A 1 MB model name in an answer is read as OTHER: the price database is never asked
    about it (the lookup grows with the name: ~0.15 s of the event loop per answer), and
    the cost event and the report carry the short name."""
    asked = _lookups(monkeypatch)
    up, server = upstream
    huge = "m" * 1_000_000

    async def handler(request: web.Request) -> web.StreamResponse:
        if not streamed:
            return web.json_response(_answer(huge))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: " + json.dumps(_answer(huge)).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    up.default = handler
    seen = _Costs()
    sw = seawall.Seawall(
        routes={"127.0.0.1": seawall.Policy(llm=True)}, entrypoints=False, plugins=[seen]
    )
    session = make_session(sw)
    async with session.post(server.make_url("/v1/chat/completions"), json={}) as resp:
        assert len(await resp.read()) > 1_000_000  # the caller gets the answer whole
    assert all(n <= costs.MODEL_NAME_MAX for n in asked)
    assert seen.models == [OTHER]
    (entry,) = sw.costs()["keys"].values()
    assert entry["models"][OTHER]["calls"] == 1
    assert entry["models"][OTHER]["input_tokens"] == 10


def test_price_never_looks_up_an_overlong_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """``price`` of a usage built by hand with a 10 MB name: no price, and no lookup."""
    asked = _lookups(monkeypatch)
    usage = costs.Usage(
        model="gpt-4o" + "x" * 10_000_000,
        provider="openai",
        flavor="chat",
        input_tokens=1,
        output_tokens=1,
    )
    assert costs.price(usage) is None
    assert asked == []


@pytest.mark.parametrize(
    "usage",
    [
        {
            "prompt_tokens": 10,
            "completion_tokens": 2,
            "prompt_tokens_details": {"cached_tokens": 11},
        },
        {"input_tokens": 10, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 10**6}},
    ],
    ids=["chat", "responses"],
)
def test_more_cached_than_input_tokens_is_absurd(usage: dict[str, Any]) -> None:
    """Cached tokens are part of the input: an answer saying otherwise is not counted, so
    ``sw.costs()`` never shows more cache reads than input tokens."""
    answer = {"model": "gpt-4o", "usage": usage}
    if "input_tokens" in usage:
        answer["object"] = "response"
    assert costs.parse_usage(answer) is None
    fine = {
        **answer,
        "usage": {**usage, **{k: 10**6 for k in ("prompt_tokens", "input_tokens") if k in usage}},
    }
    assert costs.parse_usage(fine) is not None
