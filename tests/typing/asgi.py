"""Type-checked, never run: seawall.asgi as Starlette users write it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import seawall
import seawall.asgi


@contextlib.asynccontextmanager
async def own(_app: Starlette) -> AsyncIterator[None]:
    yield


@contextlib.asynccontextmanager
async def own_state(_app: Starlette) -> AsyncIterator[dict[str, int]]:
    yield {"answer": 42}


async def handler(request: Request) -> JSONResponse:
    return JSONResponse({"ok": request.state.http is not None})


def build() -> Starlette:
    sw = seawall.Seawall()
    wrapped: seawall.asgi.ASGIApp = seawall.asgi.SeawallMiddleware(
        Starlette(), seawall=sw, deadline=1.0
    )
    del wrapped
    Starlette(lifespan=seawall.asgi.lifespan(sw, inner=own_state))
    return Starlette(
        routes=[Route("/", handler)],
        middleware=[
            Middleware(
                seawall.asgi.SeawallMiddleware,
                seawall=sw,
                deadline=5.0,
                route_deadlines={"/slow/*": 10.0},
                max_concurrency=100,
                liveness_path="/_seawall/live",
            )
        ],
        lifespan=seawall.asgi.lifespan(sw, inner=own),
    )
