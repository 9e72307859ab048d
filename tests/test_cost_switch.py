"""``Policy(costs=False)``: an LLM route whose successful answers are not read or priced.

Reading and pricing each answer cost ~0.2-0.3 ms of the event loop, with no
way to turn it off (docs/architecture.md, "Pricing answers for less").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import pytest
from aiohttp import web

import seawall
from seawall.config import ConfigError, load_file, policy_from_dict

_ANSWER = {
    "model": "gpt-4o",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
    "usage": {"prompt_tokens": 30, "completion_tokens": 5},
}

_EVENTS = [
    {"model": "gpt-4o", "choices": [{"delta": {"content": "Hi"}}]},
    {"model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 5}},
]


async def _upstream(aiohttp_server: Any, answer: dict[str, Any] = _ANSWER) -> str:
    async def chat(request: web.Request) -> web.StreamResponse:
        if (await request.json()).get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for event in _EVENTS:
                await resp.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    server = await aiohttp_server(app, host="127.0.0.1")
    return f"http://127.0.0.1:{server.port}/v1/chat/completions"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("costs", [True, False])
async def test_costs_false_leaves_answers_unpriced_and_whole(
    aiohttp_server: Any, stream: bool, costs: bool
) -> None:
    """Through ``sw.session()``, a route of ``Policy.for_llm(costs=False)`` hands the
    answer over as it came and counts no call; the same route priced counts one."""
    url = await _upstream(aiohttp_server)
    policy = seawall.Policy.for_llm(costs=costs)
    sw = seawall.Seawall(routes={"127.0.0.1": policy}, entrypoints=False)
    async with sw.session() as session, session.post(url, json={"stream": stream}) as resp:
        body = await resp.read()
    assert resp.status == 200
    assert (b"data: " in body) is stream
    report = sw.costs()
    assert report.calls == (1 if costs else 0)
    (key,) = report.by_key  # the LLM route is still reported (what failures cost)
    assert report.by_key[key].failed_attempts == 0


@pytest.mark.parametrize("costs", [True, False])
async def test_costs_false_through_the_httpx2_transport(aiohttp_server: Any, costs: bool) -> None:
    """seawall's httpx2 transport reads no answer of a ``costs=False`` route either."""
    url = await _upstream(aiohttp_server)
    policy = seawall.Policy.for_llm(costs=costs)
    sw = seawall.Seawall(routes={"127.0.0.1": policy}, entrypoints=False)
    async with httpx2.AsyncClient(transport=sw.httpx_transport(package="httpx2")) as client:
        resp = await client.post(url, json={})
    assert resp.json() == _ANSWER
    assert sw.costs().calls == (1 if costs else 0)


def test_costs_takes_a_bool_and_says_so() -> None:
    """``costs="no"`` (or 0) is refused with the field's name, not taken as a truth value."""
    for wrong in ("no", 0, None):
        with pytest.raises(TypeError, match=r"Policy\.costs.*a bool"):
            seawall.Policy(costs=wrong)  # type: ignore[arg-type]
    assert seawall.Policy.for_llm(costs=False).llm is True


def test_costs_from_a_policy_file(tmp_path: Path) -> None:
    """``costs = false`` in a route's table turns pricing off there; a quoted value is a
    problem that names the setting."""
    path = tmp_path / "seawall.toml"
    path.write_text('[routes."api.openai.com"]\npreset = "llm"\ncosts = false\n')
    _, routes = load_file(path)
    assert routes["api.openai.com"].costs is False
    assert routes["api.openai.com"].llm is True
    with pytest.raises(ConfigError, match=r"costs.*a bool"):
        policy_from_dict({"costs": "false"})


async def test_an_answer_genai_prices_cannot_count_is_handed_over(aiohttp_server: Any) -> None:
    """An Anthropic-shaped answer naming 5-minute cache writes without the cache writes
    reaches the caller whole and unpriced (reading it raised ValueError: the caller got
    the error, with seawall's notes, instead of its successful answer)."""
    pytest.importorskip("genai_prices")
    usage = {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation": {"ephemeral_5m_input_tokens": 3},
    }
    answer = {"model": "claude-sonnet-4-5", "type": "message", "usage": usage}
    url = await _upstream(aiohttp_server, answer)
    sw = seawall.Seawall(routes={"127.0.0.1": seawall.Policy.for_llm()}, entrypoints=False)
    async with sw.session() as session, session.post(url, json={}) as resp:
        assert await resp.json() == answer
    assert sw.costs().calls == 0
    assert isinstance(resp, aiohttp.ClientResponse)
