"""Seawall errors wrapped by the openai and anthropic SDKs: seawall.unwrap and the ASGI answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from httpx_aiohttp.httpx2 import AiohttpTransport
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import seawall
from seawall.asgi import SeawallMiddleware
from seawall.fake_llm import FakeProvider, status


@pytest.fixture
async def opened() -> AsyncIterator[tuple[FakeProvider, seawall.Seawall, Any]]:
    """A fake provider whose breaker is open: its one 503 tripped it."""
    policy = seawall.Policy.for_llm(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(failure_threshold=1, recovery_timeout=600.0),
    )
    sw = seawall.Seawall(routes={"127.0.0.1": policy}, entrypoints=False)
    async with FakeProvider() as fake, sw.session() as session:
        fake.then(status(503))
        with pytest.raises(openai.InternalServerError):  # the 503 itself, handed back
            await openai_client(fake, session).chat.completions.create(model="gpt-4o", messages=[])
        yield fake, sw, session
    await sw.aclose()


def openai_client(fake: FakeProvider, session: Any) -> openai.AsyncOpenAI:
    http = openai.DefaultAioHttpClient(transport=AiohttpTransport(client=session))
    return openai.AsyncOpenAI(
        base_url=fake.url + "/v1", api_key="sk-test", max_retries=0, http_client=http
    )


def anthropic_client(fake: FakeProvider, session: Any) -> anthropic.AsyncAnthropic:
    http = anthropic.DefaultAioHttpClient(transport=AiohttpTransport(client=session))
    return anthropic.AsyncAnthropic(
        base_url=fake.url, api_key="sk-ant-test", max_retries=0, http_client=http
    )


async def test_unwrap_finds_the_open_breaker_inside_openai_and_anthropic_errors(opened) -> None:
    """Both SDKs raise their APITimeoutError; seawall.unwrap gives the CircuitOpenError inside."""
    fake, _, session = opened
    with pytest.raises(openai.APIConnectionError) as from_openai:
        await openai_client(fake, session).chat.completions.create(model="gpt-4o", messages=[])
    with pytest.raises(anthropic.APIConnectionError) as from_anthropic:
        await anthropic_client(fake, session).messages.create(
            model="claude-3-5-sonnet-latest", max_tokens=10, messages=[]
        )
    assert fake.hits == 1  # only the 503 that opened it reached the provider
    for caught in (from_openai.value, from_anthropic.value):
        assert not isinstance(caught, seawall.SeawallError)
        assert "Timeout" in type(caught).__name__  # what users see (docs/llm.md)
        error = seawall.unwrap(caught)
        assert isinstance(error, seawall.CircuitOpenError)
        assert error.key == fake.url
        assert error.retry_after > 0


async def test_asgi_route_calling_the_sdk_answers_503_not_500(opened) -> None:
    """A handler whose SDK call hits the open breaker gets a 503 problem, not Starlette's 500."""
    fake, sw, session = opened

    async def chat(_request: Request) -> JSONResponse:
        answer = await openai_client(fake, session).chat.completions.create(
            model="gpt-4o", messages=[]
        )
        return JSONResponse({"text": answer.choices[0].message.content})

    app = Starlette(
        routes=[Route("/chat", chat)],
        middleware=[Middleware(SeawallMiddleware, seawall=sw)],
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        resp = await c.get("/chat")
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["type"] == "urn:seawall:problem:circuit-open"
    assert body["upstream"] == fake.url
    # The breaker's own wait (600 s less up to 20 % recovery jitter), rounded up:
    # at least what is left of it now, at most the recovery timeout.
    left = sw.health()["keys"][fake.url]["retry_after"]
    assert left > 1
    assert left <= int(resp.headers["retry-after"]) <= 600
    assert fake.hits == 1


def test_unwrap_is_bounded_and_survives_cycles() -> None:
    """A chain that loops back on itself ends; a chain without a seawall error gives None."""
    first, second = ValueError("a"), KeyError("b")
    first.__cause__, second.__cause__ = second, first
    assert seawall.unwrap(first) is None
    assert seawall.unwrap(None) is None
    inner = seawall.RetryBudgetExhaustedError("spent", key="k")
    chain: BaseException = inner
    for n in range(10):  # ten wrappers deep, as nested SDK layers would make
        outer = RuntimeError(f"layer {n}")
        outer.__cause__ = chain
        chain = outer
    assert seawall.unwrap(chain) is inner
    deep: BaseException = inner
    for n in range(100):  # deeper than UNWRAP_LIMIT: not found, and no recursion error
        wrapper = RuntimeError(f"layer {n}")
        wrapper.__cause__ = deep
        deep = wrapper
    assert seawall.unwrap(deep) is None


def test_unwrap_follows_causes_not_contexts() -> None:
    """Only an explicit ``raise ... from`` chain leads to a seawall error; an error raised
    while one was handled (implicit context), or ``from None``, is the raiser's own."""
    inner = seawall.CircuitOpenError("k", 5.0)

    def fallback_bug() -> None:
        try:
            raise inner
        except seawall.CircuitOpenError:
            {}["cached"]  # the app's own bug in its fallback

    with pytest.raises(KeyError) as implicit:
        fallback_bug()
    assert implicit.value.__context__ is inner
    assert seawall.unwrap(implicit.value) is None

    def hidden() -> None:
        try:
            raise inner
        except seawall.CircuitOpenError:
            raise RuntimeError("our database is down too") from None

    with pytest.raises(RuntimeError) as suppressed:
        hidden()
    assert seawall.unwrap(suppressed.value) is None

    def wrapped() -> None:
        try:
            raise inner
        except seawall.CircuitOpenError as err:
            raise ConnectionError("sdk's own error") from err

    with pytest.raises(ConnectionError) as explicit:
        wrapped()
    assert seawall.unwrap(explicit.value) is inner
