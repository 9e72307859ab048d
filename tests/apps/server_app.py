"""A Starlette app for ``tests/test_asgi_server.py``, run by a real uvicorn.

``/upload`` reads the request body (and logs when its handler starts, before
reading), ``/fast`` answers at once, ``/hold`` calls ``HOLD_URL`` through
seawall's session (an upstream that answers when the test lets it), ``/bug``
has a bug in its ``except CircuitOpenError:`` fallback. ``MAX_CONCURRENCY``
sets the shedder's limit.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import seawall
import seawall.asgi

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="LOG %(name)s %(message)s")
log = logging.getLogger("server_app")

HOLD_URL = os.environ.get("HOLD_URL", "http://127.0.0.1:9/")
CACHE: dict[str, Any] = {}

sw = seawall.Seawall(seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1)), entrypoints=False)


async def upload(request: Request) -> JSONResponse:
    log.info("upload started")
    body = await request.body()
    return JSONResponse({"bytes": len(body)})


async def fast(_request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def hold(request: Request) -> JSONResponse:
    async with request.state.http.get(HOLD_URL) as resp:
        return JSONResponse({"upstream": resp.status})


async def bug(_request: Request) -> JSONResponse:
    try:
        raise seawall.CircuitOpenError("recs", 30.0)
    except seawall.CircuitOpenError:
        return JSONResponse(CACHE["recs"])  # the app's own bug: KeyError


app = Starlette(
    routes=[
        Route("/upload", upload, methods=["POST"]),
        Route("/fast", fast),
        Route("/hold", hold),
        Route("/bug", bug),
    ],
    middleware=[
        Middleware(
            seawall.asgi.SeawallMiddleware,
            seawall=sw,
            max_concurrency=int(os.environ.get("MAX_CONCURRENCY", "2")),
            health_path="/_seawall/health",
            health_detail=True,
            liveness_path="/_seawall/live",
        )
    ],
    lifespan=seawall.asgi.lifespan(sw),
)
