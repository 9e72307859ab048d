"""The ASGI middleware through a real Starlette app and httpx.ASGITransport."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

import seawall
from seawall.asgi import SeawallMiddleware, lifespan
from seawall.deadline import current_deadline, remaining
from seawall.errors import AttemptRecord
from seawall.events import Event, Rejected
from seawall.problem import RETRY_AFTER_MAX, retry_after_header

from ._helpers import Clock
from .conftest import status


class Events:
    """A plugin that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @seawall.hookimpl
    def seawall_event(self, event: Event) -> None:
        self.events.append(event)


def breaker_policy(**breaker: Any) -> seawall.Policy:
    return seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(**breaker),
    )


def make_app(
    sw: seawall.Seawall,
    session: aiohttp.ClientSession | None = None,
    url: str = "",
    **options: Any,
) -> Starlette:
    """A Starlette app whose /proxy calls ``url`` through ``session``."""

    async def deadline_left(_request: Request) -> JSONResponse:
        return JSONResponse({"remaining": remaining()})

    async def proxy(_request: Request) -> JSONResponse:
        assert session is not None
        async with session.get(url) as resp:
            code = 200 if resp.status < 400 else 502
            return JSONResponse({"upstream_status": resp.status}, status_code=code)

    async def raise_error(request: Request) -> JSONResponse:
        raise request.app.state.error

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(f"{text} {current_deadline()}")
        await websocket.close()

    return Starlette(
        routes=[
            Route("/remaining", deadline_left),
            Route("/slow/remaining", deadline_left),
            Route("/proxy", proxy),
            Route("/raise", raise_error),
            WebSocketRoute("/ws", echo),
        ],
        middleware=[Middleware(SeawallMiddleware, seawall=sw, **options)],
    )


@contextlib.asynccontextmanager
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def problem(resp: httpx.Response) -> dict[str, Any]:
    assert resp.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = resp.json()
    assert set(body) >= {"type", "title", "status", "detail"}
    assert body["status"] == resp.status_code
    assert body["type"].startswith("urn:seawall:problem:")
    return body


# --- inbound deadlines ------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "headers", "low", "high"),
    [
        ({"deadline": 5.0}, {}, 4.0, 5.0),
        ({"deadline": 5.0}, {"X-Request-Timeout": "0.5"}, 0.3, 0.5),
        ({"deadline": 5.0}, {"X-Request-Timeout": "100"}, 4.0, 5.0),
        ({"deadline": 5.0}, {"grpc-timeout": "200m"}, 0.1, 0.2),
        ({"deadline": 5.0}, {"X-Request-Timeout": "nan"}, 4.0, 5.0),
        ({"deadline": 5.0}, {"X-Request-Timeout": "-3"}, 4.0, 5.0),
        ({}, {"X-Request-Timeout": "1000", "grpc-timeout": "2S"}, 1.5, 2.0),
        ({"max_deadline": 2.0}, {"X-Request-Timeout": "1000"}, 1.5, 2.0),
    ],
)
async def test_inbound_deadline_is_the_smallest_budget(
    options: dict[str, Any], headers: dict[str, str], low: float, high: float
) -> None:
    """The app budget, the timeout headers and max_deadline combine; the smallest wins."""
    sw = seawall.Seawall(entrypoints=False)
    async with client(make_app(sw, **options)) as c:
        resp = await c.get("/remaining", headers=headers)
    assert resp.status_code == 200
    assert low < resp.json()["remaining"] <= high


async def test_no_budget_means_no_deadline_and_nothing_leaks() -> None:
    """Without budget or header there is no deadline, and none survives the request."""
    sw = seawall.Seawall(entrypoints=False)
    app = make_app(sw, deadline=5.0)
    async with client(make_app(sw)) as c:
        resp = await c.get("/remaining", headers={"X-Request-Timeout": "abc"})
    assert resp.json() == {"remaining": None}
    async with client(app) as c:
        await c.get("/remaining")
    assert current_deadline() is None


async def test_route_budget_overrides_the_app_budget() -> None:
    """A route pattern's budget replaces the app's for the paths it matches."""
    sw = seawall.Seawall(entrypoints=False)
    app = make_app(sw, deadline=1.0, route_deadlines={"/slow/*": 10.0})
    async with client(app) as c:
        slow = (await c.get("/slow/remaining")).json()["remaining"]
        fast = (await c.get("/remaining")).json()["remaining"]
        capped = (await c.get("/slow/remaining", headers={"grpc-timeout": "3S"})).json()
    assert 9.0 < slow <= 10.0
    assert 0.5 < fast <= 1.0
    assert 2.0 < capped["remaining"] <= 3.0


async def test_header_can_be_ignored() -> None:
    """read_timeout_headers=False leaves only the configured budget."""
    sw = seawall.Seawall(entrypoints=False)
    app = make_app(sw, deadline=5.0, read_timeout_headers=False)
    async with client(app) as c:
        resp = await c.get("/remaining", headers={"X-Request-Timeout": "0.1"})
    assert resp.json()["remaining"] > 4.0


async def test_call_that_cannot_fit_fails_fast_with_504(upstream, make_session) -> None:
    """A budget already spent makes the outbound call fail before anything is sent."""
    up, server = upstream
    sw = seawall.Seawall(entrypoints=False)
    app = make_app(sw, make_session(sw), str(server.make_url("/x")))
    async with client(app) as c:
        resp = await c.get("/proxy", headers={"grpc-timeout": "1n"})
    assert resp.status_code == 504
    body = problem(resp)
    assert body["type"] == "urn:seawall:problem:deadline-exceeded"
    assert body["upstream"] == f"http://127.0.0.1:{server.port}"
    assert body["attempts"] == 0
    assert "retry-after" not in resp.headers
    assert up.hits == 0


async def test_inbound_deadline_bounds_a_slow_upstream(upstream, make_session) -> None:
    """An X-Request-Timeout of 0.2 s ends a call to an upstream that never answers."""
    up, server = upstream
    release = asyncio.Event()

    async def hang(_request: Any) -> Any:
        await asyncio.wait_for(release.wait(), 10)
        return await status(200)(_request)

    up.default = hang
    sw = seawall.Seawall(entrypoints=False)
    app = make_app(sw, make_session(sw), str(server.make_url("/x")), deadline=30.0)
    async with client(app) as c:
        resp = await c.get("/proxy", headers={"X-Request-Timeout": "0.2"})
    release.set()
    # Without the inbound deadline the hang would answer 200 after 10 s (the
    # app's deadline is 30 s): the 504 is the 0.2 s deadline's.
    assert resp.status_code == 504
    assert problem(resp)["attempts"] == 1
    assert up.hits == 1


async def test_sw_call_is_bounded_by_the_inbound_deadline() -> None:
    """sw.call in a handler gets the request's budget: spent is never called, short gives 504."""
    sw = seawall.Seawall(entrypoints=False)
    calls = 0

    async def never_answers() -> str:
        nonlocal calls
        calls += 1
        await asyncio.wait_for(asyncio.Event().wait(), 10)
        return "unreachable"

    async def endpoint(_request: Request) -> PlainTextResponse:
        return PlainTextResponse(await sw.call(never_answers, key="search"))

    app = Starlette(
        routes=[Route("/search", endpoint)],
        middleware=[Middleware(SeawallMiddleware, seawall=sw, deadline=30.0)],
    )
    async with client(app) as c:
        spent = await c.get("/search", headers={"grpc-timeout": "1n"})
        assert calls == 0
        short = await c.get("/search", headers={"grpc-timeout": "100m"})
    assert (spent.status_code, problem(spent)["upstream"]) == (504, "search")
    assert (short.status_code, problem(short)["attempts"]) == (504, 1)
    assert calls == 1


# --- errors out as HTTP ------------------------------------------------------------


async def test_open_breaker_answers_503_with_retry_after(upstream, make_session) -> None:
    """Once the upstream's breaker is open, the request gets a 503 problem with Retry-After."""
    up, server = upstream
    up.default = status(503)
    clock = Clock()
    policy = breaker_policy(failure_threshold=1, recovery_timeout=30.0)
    sw = seawall.Seawall(policy, entrypoints=False, clock=clock)
    app = make_app(sw, make_session(sw), str(server.make_url("/x")))
    async with client(app) as c:
        first = await c.get("/proxy")
        second = await c.get("/proxy")
    assert first.status_code == 502
    assert second.status_code == 503
    body = problem(second)
    assert body["type"] == "urn:seawall:problem:circuit-open"
    assert body["upstream"] == f"http://127.0.0.1:{server.port}"
    assert body["attempts"] == 0
    retry_after = int(second.headers["retry-after"])
    assert 24 <= retry_after <= 30
    assert body["retry_after"] == retry_after
    assert up.hits == 1


async def test_retries_exhausted_is_502_with_the_breakers_retry_after(make_session) -> None:
    """Connection failures that use up the attempts give 502, with Retry-After once the failed
    call has tripped the breaker."""
    sw = seawall.Seawall(
        seawall.Policy(
            retry=seawall.RetryPolicy(max_attempts=2),
            breaker=seawall.BreakerPolicy(failure_threshold=1, recovery_timeout=5.0),
        ),
        entrypoints=False,
        clock=Clock(),
    )
    url = "http://user:hunter2@127.0.0.1:9/x?api_key=SECRETKEY"
    app = make_app(sw, make_session(sw), url)
    async with client(app) as c:
        resp = await c.get("/proxy")
    assert resp.status_code == 502
    body = problem(resp)
    assert body["type"] == "urn:seawall:problem:retries-exhausted"
    assert body["attempts"] == 2
    assert 4 <= int(resp.headers["retry-after"]) <= 5
    assert "SECRETKEY" not in resp.text
    assert "hunter2" not in resp.text


async def test_problem_body_is_redacted() -> None:
    """Secrets in a seawall error's message or key never reach the problem body."""
    sw = seawall.Seawall(entrypoints=False)
    app = make_app(sw)
    app.state.error = seawall.RetryBudgetExhaustedError(
        "GET https://api.example.com/v1?token=TOPSECRET failed with Bearer abcdef123456",
        key="https://svc:pa55word@api.example.com",
    )
    async with client(app) as c:
        resp = await c.get("/raise")
    assert resp.status_code == 503
    body = problem(resp)
    assert body["type"] == "urn:seawall:problem:retry-budget-exhausted"
    assert body["upstream"] == "https://***@api.example.com"
    for secret in ("TOPSECRET", "abcdef123456", "pa55word"):
        assert secret not in resp.text
    assert "retry-after" not in resp.headers


async def _hang_up(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()  # the client sees ServerDisconnectedError
    return web.Response()


async def test_problem_body_never_echoes_the_upstream_path(upstream, make_session) -> None:
    """The request's path and query stay out of the problem (also a key made from a URL)."""
    up, server = upstream
    up.default = _hang_up
    sw = seawall.Seawall(breaker_policy(enabled=False), entrypoints=False)
    url = str(server.make_url("/v1/accounts/ACCT-9931/statements").with_query(q="PRIVATE"))
    app = make_app(sw, make_session(sw), url)
    async with client(app) as c:
        real = await c.get("/proxy")
        app.state.error = seawall.DeadlineExceededError(
            f"GET {url}: no time left", key="https://api.example.com/v1/accounts/ACCT-9931"
        )
        made_up = await c.get("/raise")
    body = problem(real)
    assert (real.status_code, body["type"]) == (502, "urn:seawall:problem:retries-exhausted")
    origin = f"http://127.0.0.1:{server.port}"
    assert body["upstream"] == origin
    assert body["detail"] == f"{origin} kept failing; gave up after 1 attempt"
    assert problem(made_up)["upstream"] == "https://api.example.com"
    for resp in (real, made_up):
        assert "ACCT-9931" not in resp.text
        assert "PRIVATE" not in resp.text


#: An error message naming the request, as seawall's own messages do, and long.
_REQUEST_LINE = "GET https://api.example.com/v1/accounts/ACCT-9931?token=T0KEN-SECRET failed: "
_ORIGIN = "https://api.example.com:443"
_ATTEMPT = AttemptRecord(1, "HTTP 503", "server", 0.01)


@pytest.mark.parametrize(
    ("error", "detail"),
    [
        (
            seawall.DeadlineExceededError(
                _REQUEST_LINE + "x" * 5000, key=_ORIGIN, attempts=[_ATTEMPT, _ATTEMPT]
            ),
            f"the call to {_ORIGIN} ran out of time after 2 attempts",
        ),
        (
            seawall.CircuitOpenError(_ORIGIN, 3.0, message=_REQUEST_LINE + "x" * 5000),
            f"the circuit breaker for {_ORIGIN} is open after repeated failures; "
            "no request was sent",
        ),
        (
            seawall.RetryBudgetExhaustedError(
                _REQUEST_LINE + "x" * 5000, key=_ORIGIN, attempts=[_ATTEMPT]
            ),
            f"{_ORIGIN} failed and was not retried: too many retries to it lately",
        ),
        (
            seawall.RetriesExhaustedError(
                _REQUEST_LINE + "x" * 5000, key=_ORIGIN, attempts=[_ATTEMPT]
            ),
            f"{_ORIGIN} kept failing; gave up after 1 attempt",
        ),
        (
            seawall.SeawallError(_REQUEST_LINE + "x" * 5000, key=_ORIGIN),
            f"{_ORIGIN} is unavailable",
        ),
    ],
    ids=["deadline", "circuit-open", "budget", "retries", "other"],
)
async def test_problem_detail_is_the_fixed_text_of_its_error_type(
    error: seawall.SeawallError, detail: str
) -> None:
    """docs/asgi.md: `detail` is fixed text per error type, never the error's own message.

    The message names the request line (path, query, a token) and runs to
    thousands of characters; the detail stays one short sentence.
    """
    sw = seawall.Seawall(entrypoints=False)
    app = make_app(sw)
    app.state.error = error
    async with client(app) as c:
        resp = await c.get("/raise")
    body = problem(resp)
    assert body["detail"] == detail
    assert body["upstream"] == _ORIGIN
    assert body["attempts"] == len(error.attempts)
    for fragment in ("ACCT-9931", "T0KEN-SECRET", "/v1/accounts", "xxxxxxxxxx"):
        assert fragment not in resp.text


async def test_half_open_breaker_says_retry_after_one_second() -> None:
    """A circuit-open error with no wait left still gives Retry-After: 1."""
    sw = seawall.Seawall(entrypoints=False)
    app = make_app(sw)
    app.state.error = seawall.CircuitOpenError("svc", 0.0)
    async with client(app) as c:
        resp = await c.get("/raise")
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "1"
    assert problem(resp)["retry_after"] == 1


async def test_a_huge_breaker_wait_gives_a_retry_after_clients_can_parse() -> None:
    """recovery_timeout=1e300 is a valid policy: its 503 says Retry-After: 2**31 - 1 (what a
    32-bit parser holds), not 301 digits, and the error's text stays short."""
    sw = seawall.Seawall(entrypoints=False)
    app = make_app(sw)
    app.state.error = seawall.CircuitOpenError("svc", 1e300)
    assert "in 1e+300s:" in str(app.state.error)
    assert len(str(app.state.error)) < 300
    async with client(app) as c:
        resp = await c.get("/raise")
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "2147483647"
    assert problem(resp)["retry_after"] == 2**31 - 1


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_retry_after_header_is_always_a_small_whole_number(seconds: float) -> None:
    """Whatever wait seawall computes, the header is 1 to 2**31 - 1 whole seconds, rounded up."""
    text = retry_after_header(seconds).decode()
    assert text.isdigit()
    value = int(text)
    assert 1 <= value <= RETRY_AFTER_MAX
    if 1 <= seconds <= RETRY_AFTER_MAX:
        assert value == math.ceil(seconds)


async def raw_app(scope: Any, receive: Any, send: Any) -> None:
    """A bare ASGI app that raises whatever its path names, before or after starting."""
    path = scope["path"]
    if path == "/started":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise seawall.CircuitOpenError("svc", 3.0)
    if path == "/group":
        raise ExceptionGroup(
            "tasks",
            [
                seawall.DeadlineExceededError("out of time", key="a"),
                ExceptionGroup("inner", [seawall.CircuitOpenError("b", 2.0)]),
            ],
        )
    if path == "/mixed":
        raise ExceptionGroup(
            "tasks", [seawall.DeadlineExceededError("late", key="a"), KeyError("boom")]
        )
    raise KeyError("not seawall's")


async def test_error_after_response_started_is_reraised() -> None:
    """Once the response has started, a seawall error propagates unchanged."""
    app = SeawallMiddleware(raw_app, seawall=seawall.Seawall(entrypoints=False))
    async with client(app) as c:
        with pytest.raises(seawall.CircuitOpenError):
            await c.get("/started")


async def test_other_exceptions_are_reraised() -> None:
    """An exception that is not seawall's, or a group mixing one in, is not answered for."""
    app = SeawallMiddleware(raw_app, seawall=seawall.Seawall(entrypoints=False))
    async with client(app) as c:
        with pytest.raises(KeyError):
            await c.get("/other")
        with pytest.raises(ExceptionGroup):
            await c.get("/mixed")


async def test_group_of_seawall_errors_is_answered_for_the_first() -> None:
    """A task group failing only with seawall errors gives the first one's answer."""
    app = SeawallMiddleware(raw_app, seawall=seawall.Seawall(entrypoints=False))
    async with client(app) as c:
        resp = await c.get("/group")
    assert resp.status_code == 504
    assert problem(resp)["upstream"] == "a"


# --- load shedding ----------------------------------------------------------------


async def test_load_shedding_rejects_beyond_max_concurrency() -> None:
    """With two requests held in flight, the third gets 503 at once; health stays served."""
    events = Events()
    sw = seawall.Seawall(plugins=[events], entrypoints=False)
    entered = 0
    both_in = asyncio.Event()
    gate = asyncio.Event()

    async def hold(_request: Request) -> PlainTextResponse:
        nonlocal entered
        entered += 1
        if entered == 2:
            both_in.set()
        await asyncio.wait_for(gate.wait(), 10)
        return PlainTextResponse("done")

    app = Starlette(
        routes=[Route("/hold", hold)],
        middleware=[
            Middleware(
                SeawallMiddleware,
                seawall=sw,
                max_concurrency=2,
                shed_retry_after=2.5,
                health_path="/_seawall/health",
                health_detail=True,
                liveness_path="/live",
            )
        ],
    )
    async with client(app) as c:
        held = [asyncio.create_task(c.get("/hold")) for _ in range(2)]
        await asyncio.wait_for(both_in.wait(), 10)
        shed = await c.get("/hold")
        health = await c.get("/_seawall/health")
        live = await c.get("/live")
        gate.set()
        done = await asyncio.gather(*held)
        after = await c.get("/hold")
    assert [r.status_code for r in done] == [200, 200]
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "3"
    assert problem(shed)["type"] == "urn:seawall:problem:overloaded"
    assert health.status_code == 200
    assert health.json()["inbound"] == {
        "in_flight": 2,
        "receiving": 0,
        "max_concurrency": 2,
        "shed": 1,
    }
    assert live.status_code == 200
    assert after.status_code == 200
    assert entered == 3
    rejected = [e for e in events.events if isinstance(e, Rejected)]
    assert [(e.key, e.reason, e.retry_after) for e in rejected] == [
        ("inbound", "load_shedding", 2.5)
    ]


# --- health and liveness -------------------------------------------------------------


async def test_health_flips_503_and_back(upstream, make_session) -> None:
    """Health is 200, 503 while the only breaker is open, 200 once a probe is due and after."""
    up, server = upstream
    up.then(status(503))
    clock = Clock()
    sw = seawall.Seawall(
        breaker_policy(failure_threshold=1, recovery_timeout=10.0), entrypoints=False, clock=clock
    )
    app = make_app(
        sw,
        make_session(sw),
        str(server.make_url("/x")),
        health_path="/_seawall/health",
        health_detail=True,
        liveness_path="/live",
    )
    async with client(app) as c:
        fresh = await c.get("/_seawall/health")
        await c.get("/proxy")
        down = await c.get("/_seawall/health")
        live = await c.get("/live")
        clock.now += 10.0
        due = await c.get("/_seawall/health")
        recovered = await c.get("/proxy")
        back = await c.get("/_seawall/health")
    assert (fresh.status_code, fresh.json()["status"]) == (200, "healthy")
    assert (down.status_code, down.json()["status"]) == (503, "unhealthy")
    key = f"http://127.0.0.1:{server.port}"
    assert down.json()["keys"][key]["state"] == "open"
    assert (live.status_code, live.json()) == (200, {"status": "alive"})
    assert (due.status_code, due.json()["status"]) == (200, "degraded")
    assert recovered.status_code == 200
    assert (back.status_code, back.json()["status"]) == (200, "healthy")
    assert back.headers["content-type"] == "application/json"
    assert back.headers["cache-control"] == "no-store"


async def test_health_without_detail_and_paths_configurable(upstream, make_session) -> None:
    """health_detail=False hides keys; custom paths move the endpoints; None disables them."""
    sw = seawall.Seawall(entrypoints=False)
    app = make_app(sw, health_path="/ready", health_detail=False)
    async with client(app) as c:
        ready = await c.get("/ready")
        default = await c.get("/_seawall/health")
        post = await c.post("/ready")
        head = await c.head("/ready")
    assert (ready.status_code, ready.json()) == (200, {"status": "healthy"})
    assert default.status_code == 404
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD"
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(ready.content))
    async with client(make_app(sw, health_path=None)) as c:
        assert (await c.get("/_seawall/health")).status_code == 404
        assert (await c.get("/_seawall/live")).status_code == 404


async def test_health_is_off_by_default_and_its_detail_opt_in(upstream, make_session) -> None:
    """No endpoint unless a path is given; then only the status, unless detail is allowed."""
    up, server = upstream
    sw = seawall.Seawall(entrypoints=False)
    url = str(server.make_url("/x"))
    internal = {"x-internal": "1"}
    async with client(make_app(sw, make_session(sw), url)) as c:
        await c.get("/proxy")  # a key exists now
        default = await c.get("/_seawall/health")
    async with client(make_app(sw, health_path="/_seawall/health")) as c:
        short = await c.get("/_seawall/health")
    app = make_app(
        sw,
        health_path="/_seawall/health",
        health_detail=lambda scope: (b"x-internal", b"1") in scope["headers"],
    )
    async with client(app) as c:
        public = await c.get("/_seawall/health")
        private = await c.get("/_seawall/health", headers=internal)
    assert default.status_code == 404  # the app's own 404: nothing served by default
    assert (short.status_code, short.json()) == (200, {"status": "healthy"})
    assert public.json() == {"status": "healthy"}
    assert f"127.0.0.1:{server.port}" not in short.text + public.text
    assert f"http://127.0.0.1:{server.port}" in private.json()["keys"]
    assert up.hits == 1
    with pytest.raises(TypeError, match="health_detail='yes'"):
        SeawallMiddleware(make_app(sw), seawall=sw, health_detail="yes")  # type: ignore[arg-type]


# --- non-HTTP scopes ----------------------------------------------------------------


async def test_non_http_scopes_pass_straight_through() -> None:
    """Lifespan and websocket scopes reach the app untouched, with no deadline set."""
    seen: list[tuple[Any, Any, Any, float | None]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send, current_deadline()))

    mw = SeawallMiddleware(
        inner, seawall=seawall.Seawall(entrypoints=False), deadline=1.0, max_concurrency=1
    )
    mw.in_flight = 1  # full: an HTTP request would be shed

    async def receive() -> dict[str, Any]:
        return {}

    async def send(_message: Any) -> None:
        return None

    for kind in ("lifespan", "websocket"):
        scope = {"type": kind, "path": "/_seawall/health", "headers": []}
        await mw(scope, receive, send)
        assert seen[-1] == (scope, receive, send, None)
    assert mw.shed == 0


def test_websocket_through_starlette() -> None:
    """A WebSocket route behind the middleware works and sees no inbound deadline."""
    app = make_app(seawall.Seawall(entrypoints=False), deadline=1.0)
    with TestClient(app) as tc, tc.websocket_connect("/ws") as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "hello None"


# --- construction --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency=0"),
        ({"max_concurrency": True}, "max_concurrency=True"),
        ({"health_path": "health"}, "health_path='health'"),
        ({"deadline": -1}, "deadline=-1"),
        ({"max_deadline": 0}, "max_deadline=0"),
        ({"shed_retry_after": -1}, "shed_retry_after=-1"),
        ({"route_deadlines": {"x": 1.0}}, "not a path pattern"),
    ],
)
def test_bad_options_fail_loudly(options: dict[str, Any], message: str) -> None:
    """Each bad option raises with the offending value in the message."""
    with pytest.raises(ValueError, match=message):
        SeawallMiddleware(raw_app, seawall=seawall.Seawall(entrypoints=False), **options)


def test_seawall_is_required() -> None:
    """Passing something other than a Seawall is a TypeError that says what to pass."""
    with pytest.raises(TypeError, match=r"takes a seawall\.Seawall"):
        SeawallMiddleware(raw_app, seawall=object())  # type: ignore[arg-type]


# --- lifespan ---------------------------------------------------------------------------


async def test_lifespan_shares_one_protected_session(upstream) -> None:
    """The lifespan state holds a seawall session and the engine; shutdown closes the session."""
    up, server = upstream
    sw = seawall.Seawall(entrypoints=False)
    order: list[str] = []

    @contextlib.asynccontextmanager
    async def mine(_app: Any) -> AsyncIterator[dict[str, Any]]:
        order.append("inner up")
        yield {"db": "database"}
        order.append(f"inner down, session closed={state['http'].closed}")

    async with lifespan(sw, inner=mine)(None) as state:
        assert state["seawall"] is sw
        assert state["db"] == "database"
        up.then(status(503))
        async with state["http"].get(server.make_url("/x")) as resp:
            assert resp.status == 200
        assert up.hits == 2  # retried by seawall's middleware
    assert state["http"].closed
    assert order == ["inner up", "inner down, session closed=False"]


async def test_lifespan_state_clash_fails_startup() -> None:
    """An inner lifespan yielding 'http' fails startup with a message, and closes the session."""
    sw = seawall.Seawall(entrypoints=False)

    @contextlib.asynccontextmanager
    async def mine(_app: Any) -> AsyncIterator[dict[str, Any]]:
        yield {"http": "mine"}

    with pytest.raises(RuntimeError, match=r"\['http'\].*rename"):
        async with lifespan(sw, inner=mine)(None):
            pass


def test_lifespan_state_reaches_handlers() -> None:
    """Starlette handlers see request.state.http and request.state.seawall from the helper."""
    sw = seawall.Seawall(entrypoints=False)
    sessions: list[aiohttp.ClientSession] = []

    async def info(request: Request) -> JSONResponse:
        sessions.append(request.state.http)
        return JSONResponse(
            {
                "http": type(request.state.http).__name__,
                "seawall": request.state.seawall is sw,
                "extra": request.state.extra,
            }
        )

    @contextlib.asynccontextmanager
    async def mine(_app: Any) -> AsyncIterator[dict[str, Any]]:
        yield {"extra": 42}

    app = Starlette(
        routes=[Route("/info", info)],
        middleware=[Middleware(SeawallMiddleware, seawall=sw)],
        lifespan=lifespan(sw, inner=mine),
    )
    with TestClient(app) as tc:
        resp = tc.get("/info")
        assert not sessions[0].closed
    assert json.loads(resp.text) == {"http": "ClientSession", "seawall": True, "extra": 42}
    assert sessions[0].closed
