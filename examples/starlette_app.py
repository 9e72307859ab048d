"""A Starlette app that calls a flaky upstream through seawall.

Run it (``pip install 'seawall[asgi]' uvicorn``)::

    UPSTREAM_URL=http://127.0.0.1:8081/flaky uvicorn --app-dir examples starlette_app:app

and try::

    curl -i localhost:8000/proxy                                # upstream's answer, or a problem
    curl -i -H 'X-Request-Timeout: 0.5' localhost:8000/proxy    # outbound calls get 0.5 s at most
    curl -i localhost:8000/_seawall/health                      # readiness: 200 or 503, status only
    curl -i localhost:8000/_seawall/live                        # liveness: always 200

Settings, all optional (seconds unless said otherwise):

- ``UPSTREAM_URL``: what ``/proxy`` calls (default ``http://127.0.0.1:8081/``).
- ``APP_DEADLINE``: budget of every request's outbound calls (default 5).
- ``MAX_CONCURRENCY``: requests in flight before shedding (default 100).
- ``UPSTREAM_MAX_ATTEMPTS`` (default 4), ``UPSTREAM_BASE_DELAY`` (default 0.05),
  ``UPSTREAM_FAILURE_THRESHOLD`` (count, default 5),
  ``UPSTREAM_RECOVERY_TIMEOUT`` (default 10).
- ``HEALTH_DETAIL``: ``local`` adds per-upstream detail to the health answer
  for callers on this machine (loopback); otherwise it is status only.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Scope

import seawall
import seawall.asgi
from seawall.deadline import remaining


def _env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        msg = f"{name}={raw!r} is not a number; set it to e.g. {default:g} or unset it"
        raise SystemExit(msg) from None


UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:8081/")
#: ``local``: per-upstream health detail for loopback callers; anything else: status only.
HEALTH_DETAIL = os.environ.get("HEALTH_DETAIL", "")


def local_caller(scope: Scope) -> bool:
    """Whether the request comes from this machine (loopback): it may see health detail."""
    client = scope.get("client")
    return client is not None and client[0] in ("127.0.0.1", "::1")


def build_seawall() -> seawall.Seawall:
    """One ``Seawall`` for the app, its policy read from the environment."""
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(
            max_attempts=int(_env("UPSTREAM_MAX_ATTEMPTS", 4)),
            base_delay=_env("UPSTREAM_BASE_DELAY", 0.05),
            max_delay=2.0,
        ),
        breaker=seawall.BreakerPolicy(
            failure_threshold=int(_env("UPSTREAM_FAILURE_THRESHOLD", 5)),
            recovery_timeout=_env("UPSTREAM_RECOVERY_TIMEOUT", 10.0),
        ),
    )
    return seawall.Seawall(policy)


async def proxy(request: Request) -> JSONResponse:
    """Call the upstream with the shared session; seawall retries and bounds it.

    A seawall error (breaker open, deadline passed) is not caught here: the
    middleware answers it with a 503/504 problem and a Retry-After.
    """
    started = time.monotonic()
    async with request.state.http.get(UPSTREAM_URL) as resp:
        text = await resp.text()
    elapsed = round(time.monotonic() - started, 3)
    if resp.status >= 400:
        # seawall hands back the last failed response as it is; we say so.
        body = {"upstream_status": resp.status, "elapsed": elapsed}
        return JSONResponse(body, status_code=502)
    return JSONResponse({"upstream": text, "elapsed": elapsed})


async def index(request: Request) -> JSONResponse:
    """What is left of this request's budget, and the engine's health in short."""
    sw: seawall.Seawall = request.state.seawall
    return JSONResponse(
        {
            "deadline_left": remaining(),
            "health": sw.health()["status"],
        }
    )


@contextlib.asynccontextmanager
async def own_lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
    """The app's own startup and shutdown; composed with seawall's below."""
    yield {"started_at": time.time()}


def build_app(sw: seawall.Seawall | None = None) -> Starlette:
    """The app: seawall's middleware and health endpoints, its lifespan wrapping ours."""
    sw = sw or build_seawall()
    return Starlette(
        routes=[Route("/", index), Route("/proxy", proxy)],
        middleware=[
            Middleware(
                seawall.asgi.SeawallMiddleware,
                seawall=sw,
                deadline=_env("APP_DEADLINE", 5.0),
                route_deadlines={"/reports/*": 30.0},
                max_deadline=60.0,
                max_concurrency=int(_env("MAX_CONCURRENCY", 100)),
                # Both endpoints are off unless given a path. Readiness answers only
                # {"status": ...}: the per-upstream detail lists every host we call,
                # so it is opt-in, and then only for callers on this machine.
                health_path="/_seawall/health",
                health_detail=local_caller if HEALTH_DETAIL == "local" else False,
                liveness_path="/_seawall/live",
            )
        ],
        lifespan=seawall.asgi.lifespan(sw, inner=own_lifespan),
    )


app = build_app()
