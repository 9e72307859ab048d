"""Who sees the health detail: ``health_detail`` refused when async, asked per request,
shown only on ``True``, and a faulty callable says no (logged, redacted, rate-limited)."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import seawall
from seawall import asgi_health
from seawall.asgi import SeawallMiddleware

from ._helpers import Clock

SECRET_KEY = "https://internal-billing.corp:8443"


async def _home(_request: Request) -> PlainTextResponse:
    return PlainTextResponse("app")


async def _known_upstream() -> seawall.Seawall:
    """A seawall that has called one internal upstream: the detail would name it."""
    sw = seawall.Seawall(entrypoints=False)

    async def call() -> int:
        return 1

    await sw.call(call, key=SECRET_KEY)
    return sw


def _app(sw: seawall.Seawall, rule: Any) -> Starlette:
    return Starlette(
        routes=[Route("/", _home)],
        middleware=[
            Middleware(SeawallMiddleware, seawall=sw, health_path="/h", health_detail=rule)
        ],
    )


@contextlib.asynccontextmanager
async def _client(app: Any, peer: str = "203.0.113.9") -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(peer, 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def _is_internal(scope: Any) -> bool:
    return False


class _AsyncCall:
    async def __call__(self, scope: Any) -> bool:
        return False


async def _async_gen(scope: Any) -> AsyncIterator[bool]:
    yield False


@pytest.mark.parametrize(
    "rule",
    [
        _is_internal,
        functools.partial(_is_internal),
        _AsyncCall(),
        _async_gen,
    ],
    ids=["async-def", "partial-of-async", "async-call-method", "async-generator"],
)
async def test_async_health_detail_is_refused_when_the_app_is_built(rule: Any) -> None:
    """An async callable would give a truthy coroutine: refused at once, saying what to give."""
    sw = seawall.Seawall(entrypoints=False)
    with pytest.raises(TypeError, match=r"is an async function.*give a plain def"):
        SeawallMiddleware(_home, seawall=sw, health_path="/h", health_detail=rule)  # type: ignore[arg-type]


@pytest.mark.parametrize("answer", [1, "yes", ["x"], object()])
async def test_only_true_itself_shows_the_detail(answer: object) -> None:
    """A truthy answer that is not ``True`` gives the short answer; ``True`` gives the detail."""
    sw = await _known_upstream()
    async with _client(_app(sw, lambda scope: answer)) as c:
        resp = await c.get("/h")
    assert resp.status_code == 200
    assert resp.json() == {"status": "healthy"}
    assert "internal-billing" not in resp.text
    async with _client(_app(sw, lambda scope: scope["client"][0] == "127.0.0.1"), "127.0.0.1") as c:
        trusted = await c.get("/h")
    assert SECRET_KEY in trusted.json()["keys"]


async def test_a_plain_def_returning_a_coroutine_gives_no_detail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A sync callable handing back an awaitable says no; the coroutine is closed, not leaked."""
    sw = await _known_upstream()

    def sneaky(scope: Any) -> Any:
        return _is_internal(scope)

    with caplog.at_level(logging.ERROR, logger="seawall.asgi"):
        async with _client(_app(sw, sneaky)) as c:
            resp = await c.get("/h")
    assert resp.json() == {"status": "healthy"}
    assert "returned an awaitable" in caplog.text


async def test_a_raising_health_detail_says_no_logged_redacted_and_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A callable that raises hides the detail from that request; one redacted log line per
    interval says so and counts the rest; other callers and the app are served meanwhile."""
    sw = await _known_upstream()
    clock = Clock()

    def check_token(scope: Any) -> bool:
        headers = dict(scope["headers"])
        raise KeyError(f"Authorization: {headers[b'authorization'].decode()} not in table")

    secret = "Bearer sk-live-TOKEN0123456789abcdef"
    app = SeawallMiddleware(
        Starlette(routes=[Route("/", _home)]),
        seawall=sw,
        health_path="/h",
        health_detail=check_token,
    )
    app.detail_gate = asgi_health.DetailGate(check_token, clock)  # the same rule, on a test clock
    with caplog.at_level(logging.DEBUG, logger="seawall.asgi"):
        async with _client(app) as c:
            answers = [await c.get("/h", headers={"Authorization": secret}) for _ in range(5)]
            other = await c.get("/")
            clock.advance(asgi_health.FAULT_LOG_INTERVAL + 1)
            later = await c.get("/h", headers={"Authorization": secret})
    assert all(r.status_code == 200 and r.json() == {"status": "healthy"} for r in answers)
    assert later.json() == {"status": "healthy"}
    assert other.text == "app"
    lines = [r for r in caplog.records if r.name == "seawall.asgi"]
    assert len(lines) == 2, [r.getMessage() for r in lines]
    assert "raised KeyError" in lines[0].getMessage()
    assert "4 more such faults" in lines[1].getMessage()
    assert "sk-live-TOKEN" not in caplog.text
