"""Cost tracking, key by model, and streamed answers on LLM routes."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import aiohttp
import pytest
from aiohttp import web

import seawall
from seawall.costs import StreamUsage, parse_usage
from seawall.fake_llm import FakeProvider, anthropic_error, status


@pytest.fixture
async def fake():
    """A fake provider on 127.0.0.1."""
    async with FakeProvider() as provider:
        yield provider


class Events:
    def __init__(self) -> None:
        self.seen: list[object] = []

    @seawall.hookimpl
    def seawall_event(self, event: object) -> None:
        self.seen.append(event)

    def of(self, kind: str) -> list[object]:
        return [e for e in self.seen if getattr(e, "kind", "") == kind]


def llm_seawall(*plugins: object, **overrides: object) -> seawall.Seawall:
    return seawall.Seawall(
        routes={"127.0.0.1": seawall.Policy.for_llm(**overrides)},
        entrypoints=False,
        plugins=plugins,
    )


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/v1/chat/completions", "gpt-4o"),
        ("/v1/responses", "gpt-4o"),
        ("/v1/messages", "claude-3-5-sonnet-latest"),
    ],
)
async def test_json_answers_are_priced_and_stay_readable(fake, path, model) -> None:
    """A successful JSON answer is priced per key and model and the caller reads it whole."""
    events = Events()
    sw = llm_seawall(events)
    async with (
        sw.session() as session,
        session.post(fake.url + path, json={"model": model}) as resp,
    ):
        first = await resp.content.read(5)
        rest = await resp.content.read()
    answer = json.loads(first + rest)
    assert answer["model"] == model
    report = sw.costs()
    key = f"http://127.0.0.1:{fake.url.rsplit(':', 1)[1]}"
    entry = report["keys"][key]["models"][model]
    assert entry["calls"] == 1
    assert entry["output_tokens"] == 5
    assert entry["cache_read_tokens"] == 4
    assert isinstance(entry["cost_usd"], Decimal)
    assert entry["cost_usd"] > 0
    assert report["cost_usd"] == entry["cost_usd"]
    (cost,) = events.of("cost")
    assert cost.cost_usd == entry["cost_usd"]  # type: ignore[attr-defined]


async def test_unknown_models_are_counted_unpriced(fake) -> None:
    """A model the price database does not know is counted, with no price."""
    sw = llm_seawall()
    async with sw.session() as session:
        body = {"model": "no-such-model-xyz"}
        async with session.post(fake.url + "/v1/chat/completions", json=body) as resp:
            await resp.read()
    (key,) = sw.costs()["keys"].values()
    entry = key["models"]["no-such-model-xyz"]
    assert entry["calls"] == 1
    assert entry["unpriced_calls"] == 1
    assert entry["cost_usd"] == 0


async def test_failures_cost_is_reported(fake) -> None:
    """Failed attempts and waiting seconds are in the report."""
    fake.then(status(503), anthropic_error(529, "overloaded_error"))
    sw = llm_seawall()
    async with (
        sw.session() as session,
        session.post(fake.url + "/v1/messages", json={"model": "x"}) as resp,
    ):
        assert resp.status == 200
    (key,) = sw.costs()["keys"].values()
    assert key["failed_attempts"] == 2
    assert key["waited_seconds"] > 0


async def test_key_by_model_separates_cooldowns(fake) -> None:
    """With key="model", a 429 cools down only that model's key."""
    fake.then(anthropic_error(429, "rate_limit_error", headers={"retry-after": "30"}))
    sw = llm_seawall(key="model", retry=seawall.RetryPolicy(max_attempts=1, retry_methods=["POST"]))
    async with sw.session() as session:
        for model in ("model-a", "model-b"):
            async with session.post(fake.url + "/v1/messages", json={"model": model}) as resp:
                await resp.read()
    keys = {k: v["cooldown"] for k, v in sw.health()["keys"].items()}
    (a,) = [k for k in keys if k.endswith("#model-a")]
    (b,) = [k for k in keys if k.endswith("#model-b")]
    assert keys[a] > 20
    assert keys[b] == 0


async def test_key_by_model_leaves_streams_alone(fake) -> None:
    """A streamed request body is never read for its model."""
    sw = llm_seawall(key="model")

    async def body():
        yield b'{"model": "m"}'

    async with sw.session() as session, session.post(fake.url + "/v1/messages", data=body()) as r:
        await r.read()
    assert all("#" not in key for key in sw.health()["keys"])
    assert fake.bodies == [{"model": "m"}]


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/v1/chat/completions", {"stream_options": {"include_usage": True}}),
        ("/v1/messages", {}),
    ],
)
async def test_streams_are_counted_as_they_pass(fake, path, extra) -> None:
    """A streamed answer's usage is read from its last chunks; the caller gets every byte."""
    events = Events()
    sw = llm_seawall(events)
    async with sw.session() as session:
        body = {"model": "gpt-4o", "stream": True, **extra}
        async with session.post(fake.url + path, json=body) as resp:
            text = (await resp.read()).decode()
    assert all(f"chunk{n} " in text for n in range(fake.chunks))
    (cost,) = events.of("cost")
    assert cost.streamed  # type: ignore[attr-defined]
    assert cost.output_tokens == 5  # type: ignore[attr-defined]


async def test_first_chunk_is_not_held_back() -> None:
    """The first streamed chunk reaches the caller before the server sends the last."""
    async with FakeProvider(chunks=5, chunk_delay=0.05) as fake:
        sw = llm_seawall()
        async with sw.session() as session:
            body = {"model": "gpt-4o", "stream": True}
            async with session.post(fake.url + "/v1/messages", json=body) as resp:
                first = await resp.content.readline()
                assert first.startswith(b"event: message_start")
                assert fake.last_chunk_sent_at is None
                await resp.read()
        assert fake.last_chunk_sent_at is not None


async def test_a_stream_handed_over_is_never_retried(aiohttp_server) -> None:
    """A stream that breaks after the caller got it raises there; nothing re-sends it."""
    hits = 0

    async def broken(request: web.Request) -> web.StreamResponse:
        nonlocal hits
        hits += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: {}\n\n")
        await asyncio.sleep(0.01)
        assert request.transport is not None
        request.transport.close()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", broken)
    server = await aiohttp_server(app, host="127.0.0.1")
    sw = llm_seawall()
    url = server.make_url("/v1/chat/completions")
    async with sw.session() as session, session.post(url, json={}) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert hits == 1


def test_stream_usage_survives_odd_input() -> None:
    """Split lines, keep-alives and junk do not break the usage reader."""
    found = []
    reader = StreamUsage(found.append)
    event = b'data: {"model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 3, '
    reader(b": keep-alive\n\ndata: [DONE]\n\ndata: {not json}\n\n")
    reader(event)
    reader(b'"completion_tokens": 2}}\n\n')
    reader(b"")
    (usage,) = found
    assert (usage.input_tokens, usage.output_tokens) == (3, 2)


def test_parse_usage_ignores_answers_without_usage() -> None:
    """Answers without a model or usage are not priced."""
    assert parse_usage({"model": "gpt-4o"}) is None
    assert parse_usage({"usage": {"prompt_tokens": 1}}) is None
    assert parse_usage([1, 2]) is None
