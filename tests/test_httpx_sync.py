"""The sync httpx transport (``httpx.Client``) against real upstreams on 127.0.0.1, and the
OpenAI sync client over it. Each client runs in a thread while the event loop serves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx
import openai
import pytest
from aiohttp.test_utils import TestServer

import seawall
from seawall.fake_llm import FakeProvider
from seawall.fake_llm import status as fake_status
from seawall.httpx import SyncTransport

from ._helpers import opens_after_two, policy
from ._servers import closed_port
from .conftest import Upstream, status

T = TypeVar("T")


async def in_thread(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def client(sw: seawall.Seawall) -> httpx.Client:
    return httpx.Client(transport=sw.httpx_transport(sync=True))


async def test_a_503_is_retried_and_the_error_body_is_classified(
    upstream: tuple[Upstream, TestServer],
) -> None:
    up, server = upstream
    up.then(status(503, "busy"), status(500, "boom"))
    sw = seawall.Seawall(policy(max_attempts=3), entrypoints=False)
    url = str(server.make_url("/a"))

    def get() -> httpx.Response:
        with client(sw) as http:
            resp = http.get(url)
            resp.read()
            return resp

    resp = await in_thread(get)
    assert (resp.status_code, resp.text) == (200, "ok")
    assert up.hits == 3
    (detail,) = sw.health()["keys"].values()
    assert detail["retries"] == 2


async def test_a_returned_error_response_keeps_its_body(
    upstream: tuple[Upstream, TestServer],
) -> None:
    """A hint above retry_after_max is not retried; the caller reads the whole error body."""
    up, server = upstream
    up.then(status(503, "busy for an hour", **{"Retry-After": "3600"}))
    sw = seawall.Seawall(policy(max_attempts=3), entrypoints=False)
    url = str(server.make_url("/a"))

    def get() -> tuple[int, str]:
        with client(sw) as http:
            resp = http.get(url)
            return resp.status_code, resp.text

    assert await in_thread(get) == (503, "busy for an hour")
    assert up.hits == 1


async def test_breaker_opens_and_raises_an_httpx_transport_error(
    upstream: tuple[Upstream, TestServer],
) -> None:
    up, server = upstream
    up.default = status(500)
    sw = seawall.Seawall(opens_after_two(), entrypoints=False)
    url = str(server.make_url("/"))

    def calls() -> list[Any]:
        seen: list[Any] = []
        with client(sw) as http:
            for _ in range(2):
                seen.append(http.get(url).status_code)
            try:
                http.get(url)
            except httpx.TransportError as exc:
                seen.append(exc)
        return seen

    first, second, error = await in_thread(calls)
    assert (first, second) == (500, 500)
    assert isinstance(error, httpx.TransportError)
    assert isinstance(seawall.unwrap(error), seawall.CircuitOpenError)
    assert error.request.url.path == "/"
    assert up.hits == 2


def test_connection_refused_is_retried_then_wrapped() -> None:
    sw = seawall.Seawall(policy(max_attempts=3), entrypoints=False)
    with client(sw) as http, pytest.raises(httpx.TransportError) as caught:
        http.get(f"http://127.0.0.1:{closed_port()}/")
    assert isinstance(seawall.unwrap(caught.value), seawall.RetriesExhaustedError)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert len(caught.value.attempts) == 3  # type: ignore[attr-defined]


def test_the_factory_gives_a_sync_transport_wrapping_the_given_one() -> None:
    sw = seawall.Seawall(entrypoints=False)
    inner = httpx.HTTPTransport(retries=0)
    transport = sw.httpx_transport(inner, sync=True)
    assert isinstance(transport, SyncTransport)
    assert isinstance(transport, httpx.BaseTransport)
    assert transport.transport is inner
    transport.close()


# --- the OpenAI sync client over it -------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(chunks=3) as provider:
        yield provider


def llm_seawall(**overrides: Any) -> seawall.Seawall:
    return seawall.Seawall(
        routes={"127.0.0.1": seawall.Policy.for_llm(**overrides)}, entrypoints=False
    )


async def test_openai_sync_through_the_transport(fake: FakeProvider) -> None:
    """The sync SDK never sees the 503; the answer and a stream's usage are priced."""
    sw = llm_seawall()
    fake.then(fake_status(503))

    def use() -> tuple[str | None, str]:
        with openai.OpenAI(
            base_url=fake.url + "/v1", api_key="sk-test", max_retries=0, http_client=client(sw)
        ) as sdk:
            answer = sdk.chat.completions.create(model="gpt-4o", messages=[])
            stream = sdk.chat.completions.create(
                model="gpt-4o",
                messages=[],
                stream=True,
                stream_options={"include_usage": True},
            )
            parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
        return answer.choices[0].message.content, "".join(parts)

    content, streamed = await in_thread(use)
    assert content == "Hello from the fake."
    assert streamed
    assert fake.hits == 3
    assert sw.costs()["calls"] == 2
