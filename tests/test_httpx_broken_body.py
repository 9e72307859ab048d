"""An upstream whose body breaks after the status, through the httpx and httpx2 transports,
async and sync (the aiohttp side is in ``test_blame.py``): a POST that was answered is never
sent twice, its answer is not counted against the upstream's breaker, and a GET is still
retried. Sync clients run in a thread while the event loop serves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import httpx2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import seawall

from .conftest import Upstream
from .test_blame import _broken  # a body that ends after a third of its bytes

FLAVOURS = [
    pytest.param((httpx, False), id="httpx-async"),
    pytest.param((httpx, True), id="httpx-sync"),
    pytest.param((httpx2, False), id="httpx2-async"),
    pytest.param((httpx2, True), id="httpx2-sync"),
]


def broken(code: int) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _broken(request, code)

    return handler


async def send(
    sw: seawall.Seawall, flavour: tuple[Any, bool], method: str, url: str, **kwargs: Any
) -> tuple[int, bytes]:
    """One request through seawall's transport of ``flavour``; (status, whole body)."""
    package, sync = flavour
    transport = sw.httpx_transport(sync=sync, package=package.__name__)
    if sync:

        def run() -> tuple[int, bytes]:
            with package.Client(transport=transport) as client:
                resp = client.request(method, url, **kwargs)
                return resp.status_code, resp.read()

        return await asyncio.to_thread(run)
    async with package.AsyncClient(transport=transport) as client:
        resp = await client.request(method, url, **kwargs)
        return resp.status_code, await resp.aread()


def only_state(sw: seawall.Seawall) -> Any:
    (state,) = sw._states.values()
    return state


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_an_llm_post_whose_success_body_breaks_is_sent_once(
    upstream: tuple[Upstream, TestServer], flavour: tuple[Any, bool]
) -> None:
    """A 200 whose body breaks off is not re-sent (no second bill), nor the upstream's failure."""
    up, server = upstream
    up.default = broken(200)
    sw = seawall.Seawall(routes={"127.0.0.1": seawall.Policy.for_llm()}, entrypoints=False)
    url = str(server.make_url("/v1/chat/completions"))
    with pytest.raises(flavour[0].TransportError) as raised:
        await send(sw, flavour, "POST", url, json={"model": "gpt-4o-mini"})
    assert up.hits == 1
    assert any("never re-sent" in note for note in getattr(raised.value, "__notes__", ()))
    state = only_state(sw)
    assert state.breaker.failure_rate == 0.0  # the upstream answered
    assert state.breaker.consecutive_failures == 0


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_a_post_whose_error_body_breaks_is_not_resent(
    upstream: tuple[Upstream, TestServer], flavour: tuple[Any, bool]
) -> None:
    """Even with an Idempotency-Key, a POST whose error body breaks is not sent again."""
    up, server = upstream
    up.default = broken(503)
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=3)), entrypoints=False
    )
    with pytest.raises(flavour[0].TransportError):
        await send(
            sw,
            flavour,
            "POST",
            str(server.make_url("/orders")),
            json={},
            headers={"Idempotency-Key": "order-1"},
        )
    assert up.hits == 1


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_a_get_whose_error_body_breaks_is_still_retried(
    upstream: tuple[Upstream, TestServer], flavour: tuple[Any, bool]
) -> None:
    """A GET is safe to send again: its broken error body is a network failure, retried."""
    up, server = upstream
    up.then(broken(503))
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=2)), entrypoints=False
    )
    assert await send(sw, flavour, "GET", str(server.make_url("/orders"))) == (200, b"ok")
    assert up.hits == 2
