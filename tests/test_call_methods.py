"""A plain function's HTTP request follows the adapters' rule on methods.

DESIGN: POST and PATCH are retried only with an ``Idempotency-Key`` header or
when the policy allows them; a non-idempotent request with a status is never
re-sent. The transports always knew the method. ``sw.call``, the decorators,
``call_sync`` and ``sw.attempts()`` see only the exception, which names the
request for httpx, aiohttp, requests and the OpenAI/Anthropic SDKs: a POST
that got a 503 inside ``sw.call`` used to be sent up to ``max_attempts`` times
(a card charged three times).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import httpx
import openai
import pytest
from aiohttp.test_utils import TestServer

import seawall
from seawall._path.rules import sent_request

from ._helpers import Recorder
from .conftest import Upstream, status

THREE = seawall.RetryPolicy(max_attempts=3)
POST_TOO = seawall.RetryPolicy(max_attempts=3, retry_methods={"GET", "POST"})


def _seawall(retry: seawall.RetryPolicy = THREE) -> tuple[seawall.Seawall, Recorder]:
    rec = Recorder()
    sw = seawall.Seawall(seawall.Policy(retry=retry), plugins=[rec], entrypoints=False)
    return sw, rec


def _stopped(rec: Recorder) -> str:
    (call,) = rec.of("call")
    return str(call.stopped_because)


def _httpx_fn(url: str, method: str, **headers: str) -> Callable[[], Any]:
    async def send() -> int:
        async with httpx.AsyncClient() as client:
            resp = await client.request(method, url, headers=headers, json={"amount": 10})
            resp.raise_for_status()
            return resp.status_code

    return send


async def test_a_post_that_got_a_status_is_sent_once(
    upstream: tuple[Upstream, TestServer],
) -> None:
    up, server = upstream
    up.default = status(503)
    sw, rec = _seawall()
    with pytest.raises(httpx.HTTPStatusError) as info:
        await sw.call(_httpx_fn(str(server.make_url("/pay")), "POST"), key="payments")
    assert up.hits == 1
    assert _stopped(rec) == (
        "the function's POST request is not idempotent (send an Idempotency-Key header, "
        "or add POST to RetryPolicy.retry_methods if the upstream takes repeats)"
    )
    assert any("not idempotent" in note for note in info.value.__notes__)
    await sw.aclose()


@pytest.mark.parametrize(
    ("method", "headers", "retry"),
    [
        ("GET", {}, THREE),
        ("POST", {"Idempotency-Key": "order-1"}, THREE),
        ("PATCH", {"idempotency-key": "order-1"}, THREE),  # any case, as HTTP headers go
        ("POST", {}, POST_TOO),
    ],
    ids=["get", "post-with-key", "patch-with-key", "post-allowed-by-policy"],
)
async def test_what_the_rule_allows_is_retried_as_before(
    upstream: tuple[Upstream, TestServer],
    method: str,
    headers: dict[str, str],
    retry: seawall.RetryPolicy,
) -> None:
    up, server = upstream
    up.then(status(503), status(503))
    sw, _ = _seawall(retry)
    url = str(server.make_url("/pay"))
    assert await sw.call(_httpx_fn(url, method, **headers), key="payments") == 200
    assert up.hits == 3
    await sw.aclose()


async def test_an_idempotent_method_the_policy_leaves_out_says_so(
    upstream: tuple[Upstream, TestServer],
) -> None:
    up, server = upstream
    up.default = status(503)
    sw, rec = _seawall(seawall.RetryPolicy(max_attempts=3, retry_methods={"GET"}))
    with pytest.raises(httpx.HTTPStatusError):
        await sw.call(_httpx_fn(str(server.make_url("/item/1")), "DELETE"), key="items")
    assert up.hits == 1
    assert _stopped(rec) == (
        "the policy's retry_methods excludes the function's DELETE request "
        "(add DELETE to RetryPolicy.retry_methods to retry it)"
    )
    await sw.aclose()


async def test_on_does_not_lift_the_rule(upstream: tuple[Upstream, TestServer]) -> None:
    """``on=`` says which exceptions to retry; the safety rules still hold (as for the
    adapters' requests)."""
    up, server = upstream
    up.default = status(500)
    sw, _ = _seawall()
    post = sw.protect(_httpx_fn(str(server.make_url("/pay")), "POST"))
    retried = seawall.retry(on=httpx.HTTPStatusError, attempts=3)(
        _httpx_fn(str(server.make_url("/pay")), "POST")
    )
    with pytest.raises(httpx.HTTPStatusError):
        await post()
    with pytest.raises(httpx.HTTPStatusError):
        await retried()
    assert up.hits == 2
    await sw.aclose()


async def test_aiohttp_raise_for_status_names_its_post(
    upstream: tuple[Upstream, TestServer],
) -> None:
    up, server = upstream
    up.default = status(502)
    sw, rec = _seawall()

    async def send() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.post(server.make_url("/pay"), json={}) as resp,
        ):
            resp.raise_for_status()

    with pytest.raises(aiohttp.ClientResponseError):
        await sw.call(send, key="payments")
    assert up.hits == 1
    assert "the function's POST request is not idempotent" in _stopped(rec)
    await sw.aclose()


async def test_an_attempts_block_and_a_sync_call_follow_the_rule(
    upstream: tuple[Upstream, TestServer],
) -> None:
    up, server = upstream
    up.default = status(503)
    url = str(server.make_url("/pay"))
    sw, _ = _seawall()

    async def block() -> None:
        async for attempt in sw.attempts(key="payments"):
            with attempt:
                await _httpx_fn(url, "POST")()

    with pytest.raises(httpx.HTTPStatusError):
        await block()
    assert up.hits == 1

    def send_sync() -> None:
        with httpx.Client() as client:
            client.post(url, json={}).raise_for_status()

    with pytest.raises(httpx.HTTPStatusError):
        await asyncio.to_thread(sw.call_sync, send_sync, key="payments")
    assert up.hits == 2
    await sw.aclose()


async def test_the_openai_sdk_through_sw_call(upstream: tuple[Upstream, TestServer]) -> None:
    """The SDK's POST is retried under ``Policy.for_llm()`` (POST allowed, as docs/llm.md
    says to use), and sent once under a policy that does not allow POST."""
    up, server = upstream
    up.default = status(500, '{"error": {"message": "boom", "type": "server_error"}}')
    client = openai.AsyncOpenAI(
        base_url=str(server.make_url("/v1")), api_key="sk-test", max_retries=0
    )

    async def ask() -> Any:
        return await client.chat.completions.create(model="gpt-4o", messages=[])

    plain, rec = _seawall()
    with pytest.raises(openai.InternalServerError):
        await plain.call(ask, key="openai")
    assert up.hits == 1
    assert "the function's POST request is not idempotent" in _stopped(rec)

    llm = seawall.Seawall(entrypoints=False)
    policy = seawall.Policy.for_llm(retry={"max_attempts": 3, "base_delay": 0.01})
    with pytest.raises(openai.InternalServerError):
        await llm.call(ask, key="openai", policy=policy)
    assert up.hits == 4
    await client.close()
    await plain.aclose()
    await llm.aclose()


class _Hostile(Exception):
    """An exception whose ``request`` is unlike any client's."""

    def __init__(self, request: Any) -> None:
        super().__init__("boom")
        self._request = request

    @property
    def request(self) -> Any:
        if isinstance(self._request, BaseException):
            raise self._request
        return self._request


class _Request:
    def __init__(self, method: Any, headers: Any = None) -> None:
        self.method = method
        self.headers = headers


class _BadHeaders:
    def __iter__(self) -> Any:
        raise RuntimeError("no headers here")


@pytest.mark.parametrize(
    "request_",
    [
        RuntimeError("httpx: the request instance has not been set"),
        None,
        _Request(None),
        _Request(b"POST"),
        _Request(""),
        _Request("POST", _BadHeaders()),
    ],
    ids=["raises", "none", "no-method", "bytes", "empty", "headers-raise"],
)
async def test_an_exception_that_names_no_usable_request_is_retried_as_before(
    request_: Any,
) -> None:
    assert sent_request(_Hostile(request_)) is None
    sw, _ = _seawall()
    calls = 0

    async def hostile() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise _Hostile(request_)
        return "ok"

    with pytest.raises(_Hostile):  # an unknown error: retried once, as before
        await sw.call(hostile, key="k")
    assert calls == 2
    await sw.aclose()


def test_sent_request_reads_each_clients_error() -> None:
    req = httpx.Request("post", "http://127.0.0.1/", headers={"IDEMPOTENCY-KEY": "1"})
    resp = httpx.Response(503, request=req)
    assert sent_request(httpx.HTTPStatusError("x", request=req, response=resp)) == ("POST", True)
    assert sent_request(httpx.ConnectError("x", request=httpx.Request("GET", "http://h/"))) == (
        "GET",
        False,
    )
    many = {f"x-{n}": "v" for n in range(300)} | {"Idempotency-Key": "late"}
    crowded = httpx.Request("POST", "http://127.0.0.1/", headers=many)
    assert sent_request(httpx.ConnectError("x", request=crowded)) == ("POST", False)
    assert sent_request(ValueError("no request")) is None
