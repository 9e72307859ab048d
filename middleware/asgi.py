"""The ASGI middleware for Starlette, FastAPI and any ASGI app.

::

    sw = seawall.Seawall()
    app = Starlette(
        routes=[...],
        middleware=[Middleware(SeawallMiddleware, seawall=sw, deadline=10.0)],
        lifespan=seawall.asgi.lifespan(sw),
    )

For each HTTP request it sets an inbound deadline (``seawall.deadline``)
from the configured budgets and the ``X-Request-Timeout``/``grpc-timeout``
headers, turns a ``SeawallError`` escaping the app before the response
started (also one wrapped by an SDK, found through ``seawall.unwrap``) into a
502/503/504 ``application/problem+json`` answer, optionally sheds load beyond
``max_concurrency``, and serves a health and a liveness endpoint, both off
unless given a path. WebSocket and lifespan scopes pass straight through. Pure ASGI:
Starlette is never imported here. See docs/asgi.md.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from seawall.asgi_health import DetailGate, check_health_detail
from seawall.asgi_shed import INBOUND_KEY, Shedder, Slot
from seawall.deadline import deadline as deadline_scope
from seawall.errors import (
    CircuitOpenError,
    DeadlineExceededError,
    RetriesExhaustedError,
    RetryBudgetExhaustedError,
    SeawallError,
    unwrap,
)
from seawall.inbound import RouteBudgets, check_seconds, header_timeout
from seawall.problem import PROBLEM_TYPE_BASE, send_json, send_problem
from seawall.redact import MASK, redact_text

if TYPE_CHECKING:
    from seawall.engine import Seawall


def _is_seawall(candidate: object) -> bool:
    """Whether ``candidate`` is a ``Seawall`` (by what this adapter uses: the facade sits above)."""
    return all(hasattr(candidate, name) for name in ("registry", "health", "hooks", "run"))


__all__ = [
    "ERROR_STATUSES",
    "INBOUND_KEY",
    "PROBLEM_TYPE_BASE",
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "SeawallMiddleware",
    "Send",
    "lifespan",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Lifespan = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]

log = logging.getLogger("seawall.asgi")

#: For a ``SeawallError`` escaping the app: status, type slug and title; first match wins.
ERROR_STATUSES: tuple[tuple[type[SeawallError], int, str, str], ...] = (
    (DeadlineExceededError, 504, "deadline-exceeded", "Upstream call out of time"),
    (CircuitOpenError, 503, "circuit-open", "Upstream temporarily unavailable"),
    (RetryBudgetExhaustedError, 503, "retry-budget-exhausted", "Upstream failing"),
    (RetriesExhaustedError, 502, "retries-exhausted", "Upstream failing"),
    (SeawallError, 503, "upstream-unavailable", "Upstream unavailable"),
)

_HEALTH_OK = frozenset({"healthy", "degraded"})

#: The problem's ``detail`` for each error: fixed text around the upstream's
#: name, never the error's message (it names the request, path and query).
_DETAILS: tuple[tuple[type[SeawallError], str], ...] = (
    (DeadlineExceededError, "the call to {upstream} ran out of time after {attempts}"),
    (
        CircuitOpenError,
        "the circuit breaker for {upstream} is open after repeated failures; no request was sent",
    ),
    (
        RetryBudgetExhaustedError,
        "{upstream} failed and was not retried: too many retries to it lately",
    ),
    (RetriesExhaustedError, "{upstream} kept failing; gave up after {attempts}"),
    (SeawallError, "{upstream} is unavailable"),
)


def _seawall_error(exc: BaseException) -> SeawallError | None:
    """The ``SeawallError`` to answer for, or ``None`` to re-raise.

    A seawall error wrapped by an SDK counts (``seawall.unwrap``). An
    exception group (a task group in the handler) counts when every exception
    in it is or wraps a ``SeawallError``; the first one is answered for.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return unwrap(exc)
    match, rest = exc.split(lambda e: unwrap(e) is not None)
    if match is None or rest is not None:
        return None
    first: BaseException = match
    for _ in range(100):  # nesting depth, bounded
        if not isinstance(first, BaseExceptionGroup):
            break
        first = first.exceptions[0]
    return unwrap(first)


def _upstream(key: str) -> str:
    """The key as shown to clients: redacted, and of a URL-like key no path or query.

    Keys are ``scheme://host:port`` by default (``#model`` appended by
    ``Policy(key="model")``); one a user made from a whole URL is cut at its path.
    Credentials are masked before the cut (a password may hold an unencoded
    ``/``); when what is left before the path is not ``host[:port]`` (an ``@``
    in it, a port that is not a number) nothing of the authority is shown.
    """
    shown = redact_text(key)
    scheme, sep, rest = shown.partition("://")
    if not sep:
        return shown
    userinfo = MASK + "@" if rest.startswith(MASK + "@") else ""
    authority = re.split(r"[/?]", rest[len(userinfo) :], maxsplit=1)[0]
    host = authority.partition("#")[0]
    _, colon, port = host.rpartition(":")
    if "@" in host or (colon and not port.isdigit() and not host.endswith("]")):
        return f"{scheme}://{MASK}"
    return f"{scheme}://{userinfo}{authority}"


class SeawallMiddleware:
    """Inbound deadlines, seawall errors as HTTP, load shedding and health, for one app.

    :param app: the ASGI app to wrap.
    :param seawall: the ``Seawall`` whose calls the app makes.
    :param deadline: seconds every request may spend on outbound calls, or ``None``.
    :param route_deadlines: budgets by path (``{"/slow/*": 10.0}``; exact
        paths first, then fnmatch patterns in order; ``None`` means no budget).
    :param read_timeout_headers: honour ``X-Request-Timeout`` and ``grpc-timeout``
        (they can only shorten the configured budget).
    :param max_deadline: the most seconds a header may grant, or ``None``.
    :param max_concurrency: requests in flight beyond which new ones get a 503
        at once; ``None`` never sheds. Health and liveness are exempt; a request
        whose app waits for the client's body holds no slot (``seawall.asgi_shed``).
    :param shed_retry_after: ``Retry-After`` seconds of a shed request.
    :param health_path: the readiness endpoint, e.g. ``"/_seawall/health"``, or
        ``None`` (the default) for none.
    :param liveness_path: the liveness endpoint, or ``None`` for none.
    :param health_detail: include per-key detail (every upstream, breaker state
        and plugin fault) in the health answer: ``False`` (the default) gives
        only ``{"status": ...}``; ``True`` gives it to every caller; a plain
        (not async) callable taking the ASGI scope decides per request (e.g.
        only from loopback): only its ``True`` shows the detail; if it raises,
        that request gets none (``seawall.asgi_health``).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        seawall: Seawall,
        deadline: float | None = None,
        route_deadlines: Mapping[str, float | None] | None = None,
        read_timeout_headers: bool = True,
        max_deadline: float | None = None,
        max_concurrency: int | None = None,
        shed_retry_after: float = 1.0,
        health_path: str | None = None,
        liveness_path: str | None = None,
        health_detail: bool | Callable[[Scope], bool] = False,
    ) -> None:
        if not _is_seawall(seawall):
            msg = f"SeawallMiddleware(seawall=...) takes a seawall.Seawall, not {seawall!r}"
            raise TypeError(msg)
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            msg = f"max_concurrency={max_concurrency!r}: give a whole number >= 1, or None"
            raise ValueError(msg)
        for name, path in (("health_path", health_path), ("liveness_path", liveness_path)):
            if path is not None and (not isinstance(path, str) or not path.startswith("/")):
                msg = f"{name}={path!r} is not a path; use e.g. '/_seawall/health', or None"
                raise ValueError(msg)
        self.app = app
        self.seawall = seawall
        self.budgets = RouteBudgets(deadline, route_deadlines)
        self.read_timeout_headers = read_timeout_headers
        self.max_deadline = check_seconds("max_deadline", max_deadline)
        self.max_concurrency = max_concurrency
        self.shed_retry_after = check_seconds("shed_retry_after", shed_retry_after) or 1.0
        self.health_path = health_path
        self.liveness_path = liveness_path
        self.health_detail = check_health_detail(health_detail)
        self.detail_gate = DetailGate(self.health_detail)
        # App-wide counters (one event loop, no awaits between check and update).
        self.shedder = Shedder(max_concurrency, self.shed_retry_after)

    @property
    def in_flight(self) -> int:
        """Requests holding a concurrency slot now (see ``seawall.asgi_shed``)."""
        return self.shedder.in_flight

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        self.shedder.in_flight = value

    @property
    def shed(self) -> int:
        """Requests shed so far."""
        return self.shedder.shed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == self.liveness_path:
            await self._probe(scope, send, liveness=True)
            return
        if path == self.health_path:
            await self._probe(scope, send, liveness=False)
            return
        shedder = self.shedder
        if not shedder.admit():
            await shedder.answer_shed(send, self.seawall.hooks)
            return
        if shedder.limit is None:  # counted, never shed: the body wait needs no care
            try:
                await self._guarded(scope, receive, send)
            finally:
                shedder.release()
            return
        slot = Slot(shedder, receive)
        try:
            await self._guarded(scope, slot.wrapped_receive, send)
        finally:
            slot.end()

    # --- deadlines and errors ---------------------------------------------------

    def budget(self, scope: Scope) -> float | None:
        """Seconds this request may spend on outbound calls: the smallest budget, or ``None``."""
        budget = self.budgets.for_path(scope.get("path", ""))
        if self.read_timeout_headers:
            inbound = header_timeout(scope.get("headers") or ())
            if inbound is not None:
                if self.max_deadline is not None:
                    inbound = min(inbound, self.max_deadline)
                budget = inbound if budget is None else min(budget, inbound)
        return budget

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with deadline_scope(self.budget(scope)):
            try:
                await self.app(scope, receive, send_tracking)
            except Exception as exc:
                error = _seawall_error(exc)
                if error is None or started:
                    raise
                await self._answer(error, send)

    def _retry_after(self, error: SeawallError) -> float | None:
        """Seconds until the upstream may be worth calling again, when seawall knows."""
        if isinstance(error, CircuitOpenError):
            return error.retry_after
        state = self.seawall.registry.view.get(error.key)
        if state is None:
            return None
        wait = max(state.breaker.retry_after(), state.cooldown.remaining() or 0.0)
        return wait or None

    async def _answer(self, error: SeawallError, send: Send) -> None:
        status, slug, title = next(
            (code, slug, title)
            for cls, code, slug, title in ERROR_STATUSES
            if isinstance(error, cls)
        )
        upstream = _upstream(error.key)
        count = len(error.attempts)
        attempts = f"{count} attempt" + ("" if count == 1 else "s")
        template = next(text for cls, text in _DETAILS if isinstance(error, cls))
        detail = template.format(upstream=upstream, attempts=attempts)
        log.info(
            "answered %d (%s) for upstream %s: %s", status, slug, upstream, redact_text(str(error))
        )
        await send_problem(
            send,
            status,
            slug,
            title,
            detail,
            self._retry_after(error),
            upstream=upstream,
            attempts=count,
        )

    # --- health and liveness ---------------------------------------------------------

    def health(self, detail: bool | None = None) -> tuple[int, dict[str, Any]]:
        """The readiness answer: status code and body (see docs/asgi.md).

        :param detail: include per-key detail; ``None`` means "as configured"
            (a ``health_detail`` callable counts as ``False`` here: no scope).
        """
        report = self.seawall.health()
        status = report["status"]
        code = 200 if status in _HEALTH_OK else 503
        if detail is None:
            detail = self.health_detail is True
        if not detail:
            return code, {"status": status}
        body = report.to_dict()
        body["inbound"] = {
            "in_flight": self.shedder.in_flight,
            "receiving": self.shedder.receiving,
            "max_concurrency": self.max_concurrency,
            "shed": self.shedder.shed,
        }
        return code, body

    async def _probe(self, scope: Scope, send: Send, *, liveness: bool) -> None:
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            body = {"detail": f"{method} is not allowed here; use GET or HEAD"}
            await send_json(send, 405, body, headers=((b"allow", b"GET, HEAD"),))
            return
        if liveness:
            code, report = 200, {"status": "alive"}
        else:
            code, report = self.health(self.detail_gate.allows(scope))
        await send_json(send, code, report, head=method == "HEAD")


def lifespan(
    sw: Seawall,
    inner: Lifespan | None = None,
    *,
    close_seawall: bool = True,
    **session_kwargs: Any,
) -> Callable[[Any], AbstractAsyncContextManager[dict[str, Any]]]:
    """A Starlette ``lifespan=``: one shared seawall ``ClientSession`` for the app.

    At startup it opens ``sw.session(**session_kwargs)``, then enters
    ``inner(app)`` (the app's own lifespan, if any); the lifespan state is
    ``{"http": session, "seawall": sw}`` plus whatever ``inner`` yields, so
    handlers use ``request.state.http`` and ``request.state.seawall``. At
    shutdown it leaves ``inner``, closes the session and, unless
    ``close_seawall=False``, awaits ``sw.aclose()``.
    """

    @contextlib.asynccontextmanager
    async def context(app: Any) -> AsyncIterator[dict[str, Any]]:
        async with contextlib.AsyncExitStack() as stack:
            if close_seawall:
                stack.push_async_callback(sw.aclose)
            session = sw.session(**session_kwargs)
            stack.push_async_callback(session.close)
            state: dict[str, Any] = {"http": session, "seawall": sw}
            if inner is not None:
                extra = await stack.enter_async_context(inner(app))
                clash = sorted(set(extra or {}) & set(state))
                if clash:
                    msg = (
                        f"the inner lifespan yields state {clash!r}, which "
                        "seawall.asgi.lifespan sets itself; rename those keys"
                    )
                    raise RuntimeError(msg)
                state.update(extra or {})
            yield state

    return context
