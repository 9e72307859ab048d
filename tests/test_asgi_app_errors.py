"""The app's own errors stay the app's: only a seawall error itself, or one an exception
was explicitly raised ``from``, is answered as an upstream problem."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import seawall
from seawall.asgi import SeawallMiddleware

CACHE: dict[str, Any] = {}


async def _fallback_bug(_request: Request) -> JSONResponse:
    try:
        raise seawall.CircuitOpenError("recs", 30.0)
    except seawall.CircuitOpenError:
        return JSONResponse(CACHE["recs"])  # the app's bug: KeyError in its fallback


async def _own_error_from_none(_request: Request) -> JSONResponse:
    try:
        raise seawall.CircuitOpenError("recs", 30.0)
    except seawall.SeawallError:
        raise RuntimeError("our own database is down too") from None


async def _sdk_wrapped(_request: Request) -> JSONResponse:
    try:
        raise seawall.CircuitOpenError("recs", 30.0)
    except seawall.SeawallError as err:
        raise ConnectionError("the SDK's connection error") from err


def _app(seen: list[BaseException]) -> Starlette:
    async def on_error(_request: Request, exc: Exception) -> JSONResponse:
        seen.append(exc)  # the app's own 500 handler (error tracker, error JSON)
        return JSONResponse({"error": "internal"}, status_code=500)

    sw = seawall.Seawall(entrypoints=False)
    return Starlette(
        routes=[
            Route("/bug", _fallback_bug),
            Route("/none", _own_error_from_none),
            Route("/sdk", _sdk_wrapped),
        ],
        exception_handlers={Exception: on_error},
        middleware=[Middleware(SeawallMiddleware, seawall=sw)],
    )


@pytest.mark.parametrize(
    ("path", "error"), [("/bug", KeyError), ("/none", RuntimeError)], ids=["implicit", "from-none"]
)
async def test_an_error_raised_while_handling_a_seawall_error_is_the_apps(
    path: str, error: type[Exception]
) -> None:
    """A bug in the ``except SeawallError:`` path reaches the app's own 500 handler and the
    server (which logs it), not a 503 problem that would blame the upstream."""
    seen: list[BaseException] = []
    transport = httpx.ASGITransport(app=_app(seen), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        resp = await c.get(path)
        wrapped = await c.get("/sdk")
    assert resp.status_code == 500
    assert resp.json() == {"error": "internal"}
    assert [type(e) for e in seen] == [error]
    # Other routes, whose exceptions were raised *from* seawall's, still answer for it.
    assert wrapped.status_code == 503
    assert wrapped.json()["type"] == "urn:seawall:problem:circuit-open"
