"""The aiohttp client middleware: ``ClientSession(middlewares=[sw.middleware()])``.

Per-request state lives in locals and closures, never on the instance, so one
middleware serves any number of concurrent requests.

On LLM routes (``Policy.llm`` or a well-known provider host) it also keys the
call by the JSON body's ``model`` when the policy says ``key="model"``, and
prices successful answers (``seawall.costs``): a JSON answer is read (and
replayed to the caller), a streamed one is watched as it passes, never held.
Once the response is returned to the caller, nothing retries it; nor is a
request re-sent when the body of a success (or, for a POST or PATCH, of any
response) breaks off while seawall reads it: the caller gets the error
aiohttp raised (``BrokenBody`` carries it to ``Seawall.run``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import ClientHandlerType, ClientMiddlewareType, ClientRequest, ClientResponse
from aiohttp.payload import BytesPayload

import seawall.watchdog as _watchdog
from seawall import costs
from seawall._body import ERROR_BODY_LIMIT, ERROR_BODY_WAIT, peek_body, tap_body
from seawall._path.registry import Route
from seawall._path.spec import (
    Attempt,
    BrokenBody,
    CallSpec,
    FirstAttempt,
    answered_before,
    attempt_timeout,
    mark_answered,
)
from seawall.breaker import BreakerState
from seawall.context import current_context
from seawall.deadline import DEADLINE_VAR
from seawall.errors import (
    CircuitOpenError,
    DeadlineExceededError,
    RetriesExhaustedError,
    RetryBudgetExhaustedError,
    SeawallError,
)
from seawall.llm import MODEL_BODY_LIMIT, model_from_json
from seawall.policy import IDEMPOTENT_METHODS

if TYPE_CHECKING:
    from seawall.engine import Seawall

__all__ = [
    "CLIENT_TWINS",
    "ClientCircuitOpenError",
    "ClientDeadlineExceededError",
    "ClientRetriesExhaustedError",
    "ClientRetryBudgetExhaustedError",
    "make_middleware",
    "reruns",
]

# --- the error twins and the re-run quirk ---------------------------------------


class ClientCircuitOpenError(CircuitOpenError, aiohttp.ClientConnectionError):
    """``CircuitOpenError`` raised from the aiohttp middleware."""


class ClientRetryBudgetExhaustedError(RetryBudgetExhaustedError, aiohttp.ClientConnectionError):
    """``RetryBudgetExhaustedError`` raised from the aiohttp middleware."""


class ClientDeadlineExceededError(DeadlineExceededError, aiohttp.ClientConnectionError):
    """``DeadlineExceededError`` raised from the aiohttp middleware."""


class ClientRetriesExhaustedError(RetriesExhaustedError, aiohttp.ClientConnectionError):
    """``RetriesExhaustedError`` raised from the aiohttp middleware."""


#: Maps each error to its aiohttp-compatible twin.
CLIENT_TWINS: dict[type[SeawallError], type[SeawallError]] = {
    CircuitOpenError: ClientCircuitOpenError,
    RetryBudgetExhaustedError: ClientRetryBudgetExhaustedError,
    DeadlineExceededError: ClientDeadlineExceededError,
    RetriesExhaustedError: ClientRetriesExhaustedError,
}


def reruns(exc: BaseException) -> bool:
    """Whether aiohttp would re-run the whole middleware chain if ``exc`` escaped.

    It does once on these two (but not on connector errors, which it
    re-raises at once), so seawall wraps them in ``RetriesExhaustedError``.
    """
    return isinstance(
        exc, aiohttp.ClientOSError | aiohttp.ServerDisconnectedError
    ) and not isinstance(exc, aiohttp.ClientConnectorError)


_CLOSED = BreakerState.CLOSED


_current_task = _watchdog.current_task
_inbound_deadline = DEADLINE_VAR.get  # bound once: a C method looked up per call costs more

_STREAMING = "text/event-stream"


def _replayable(req: ClientRequest) -> bool:
    """Whether ``req``'s body can be sent again: a consumed async generator cannot."""
    body: Any = req.body
    return not getattr(body, "consumed", False)


def _release(resp: ClientResponse) -> None:
    resp.release()


async def _model_key(key: str, req: ClientRequest) -> str:
    """``key#model`` when the body is in-memory JSON naming a model; else ``key``.

    Only bytes payloads (``json=``, ``data=b"..."``, what the SDKs send) up to
    ``MODEL_BODY_LIMIT`` are looked at: a stream is never consumed.
    """
    body = req.body
    if not isinstance(body, BytesPayload) or (body.size or 0) > MODEL_BODY_LIMIT:
        return key
    model = model_from_json(await body.as_bytes())
    return f"{key}#{model}" if model else key


async def _watch_cost(sw: Seawall, spec: CallSpec, url: str, resp: ClientResponse) -> None:
    """Read the usage of a successful LLM answer, leaving the body whole for the caller.

    A stream is counted once however it ends (``tap_body`` says when).
    """
    content_type = resp.content_type
    key = spec.key
    if content_type == _STREAMING:
        by_model = spec.policy.key == "model"
        tap_body(resp, costs.stream_usage(sw.cost_tracker, sw.hooks, key, url, by_model))
        return
    if content_type != "application/json":
        return
    try:
        body = await peek_body(resp, costs.SUCCESS_BODY_LIMIT)
    except BaseException:
        resp.close()
        raise
    usage = costs.usage_from_json(body) if body else None
    if usage is not None:
        costs.account(sw.cost_tracker, sw.hooks, key, url, usage)


def _attempt_maker(
    sw: Seawall, spec: CallSpec, req: ClientRequest, handler: ClientHandlerType
) -> Callable[[int], Awaitable[Attempt]]:
    method = req.method
    priced = spec.llm and spec.policy.costs  # costs=False: successes are not read

    async def attempt(_number: int) -> Attempt:
        resp = await handler(req)
        status = resp.status
        if status < 400:
            if priced and method != "HEAD":
                try:
                    await _watch_cost(sw, spec, str(spec.redacted_url), resp)
                except Exception as exc:
                    # A success status: whatever happens to the body, never re-sent.
                    raise BrokenBody(exc, status) from exc
                except asyncio.CancelledError as cancelled:
                    mark_answered(cancelled, status)  # nor when its time limit cuts it
                    raise
            return Attempt(resp, status, resp.headers)
        return await _failed(resp, method)

    return attempt


async def _failed(resp: ClientResponse, method: str) -> Attempt:
    """An error response, with the start of its body for the classifiers.

    A request that is not idempotent by HTTP semantics (a POST, a PATCH) whose
    error body breaks off is never re-sent: the server has seen it.
    """
    try:
        content_type = resp.content_type
        body = None
        if content_type != _STREAMING and method != "HEAD":
            body = await peek_body(resp, ERROR_BODY_LIMIT, ERROR_BODY_WAIT)
    except BaseException as exc:
        resp.close()
        if method not in IDEMPOTENT_METHODS:
            if isinstance(exc, Exception):
                raise BrokenBody(exc, resp.status) from exc
            if isinstance(exc, asyncio.CancelledError):
                mark_answered(exc, resp.status)  # nor when the attempt's time limit cuts it
        raise
    return Attempt(resp, resp.status, resp.headers, body, content_type)


async def _through_run(
    sw: Seawall,
    route: Route,
    req: ClientRequest,
    handler: ClientHandlerType,
    first: FirstAttempt | None = None,
) -> ClientResponse:
    """The whole request (or what follows ``first``) through ``Seawall.run``."""
    key, policy = route.key, route.policy
    if policy.key == "model":
        key = await _model_key(key, req)
        state = sw.registry.state_for(key, policy)
    else:
        state = route.state = route.state or sw.registry.state_for(key, policy)
    method = req.method
    spec = CallSpec(
        key=key,
        policy=policy,
        state=state,
        method=method,
        url=req.url,
        context=current_context(),
        idempotent=method in policy.retry.retry_methods or "Idempotency-Key" in req.headers,
        replayable=lambda: _replayable(req),
        discard=_release,
        http=True,
        llm=route.llm,
        twins=CLIENT_TWINS,
        wrap=reruns,
    )
    response: ClientResponse = await sw.run(spec, _attempt_maker(sw, spec, req, handler), first)
    return response


def make_middleware(sw: Seawall) -> ClientMiddlewareType:
    """The middleware ``sw.middleware()`` returns: a plain async function.

    Most requests take its lean path: when the origin's route allows it
    (``Route.fast``) and the key is idle (breaker closed, no cooldown, no
    inbound deadline shorter than the attempt limit), the first attempt is
    made right here, with the bookkeeping ``Seawall.run`` would do inlined,
    and a success is returned at once. Anything else, and whatever follows a
    failed first attempt, goes through ``Seawall.run``: one loop decides.
    A request on this path costs the client about 3 % more instructions than
    through a pass-through middleware; ``benchmarks/README.md`` has the figures.
    """
    routes = sw.registry.cache
    origin = sw.registry.route_for
    clock = sw.clock
    monotonic = clock is time.monotonic  # then the watchdog can use our readings
    dog_loop: asyncio.AbstractEventLoop | None = None  # a session lives on one loop
    dog: _watchdog.Watchdog | None = None
    dog_clock = False  # whether the watchdog's clock is ours

    async def seawall_middleware(req: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        nonlocal dog_loop, dog, dog_clock
        url = req.url
        try:  # yarl's own fields: a third of the cost of its properties
            route = routes.get((url._scheme, url._netloc)) or origin(url)
        except AttributeError:  # a yarl that renamed them
            route = origin(url)
        state = route.state
        if state is None or not route.fast:
            return await _through_run(sw, route, req, handler)
        cooldown = state.cooldown
        started = clock()
        limit = route.limit
        inbound = _inbound_deadline()
        if (
            state.breaker.state is not _CLOSED
            or state.breaker.ramp_until  # the ramp after a recovery queues calls
            or cooldown.rate is not None
            or cooldown.until > started
            or (inbound is not None and (limit is None or inbound - time.monotonic() <= limit))
        ):
            return await _through_run(sw, route, req, handler)
        # KeyState.begin, Watchdog.watch_at/done and the success's bookkeeping are
        # written out (as in seawall.call_lean.run_call): here each Python call, and
        # each `with` on the lock (its __enter__ parses arguments), costs more
        # than the work it does. run_call's block is this one's twin, kept apart
        # on purpose (sharing cost +0.9k instructions a call, docs/architecture.md).
        # KeyState.begin(started) waits for the attempt's end: one locked section
        # a request, not two (or before a cancellation is raised).
        # Not counted in cooldown.inflight: only LLM routes read rate-limit
        # headers, and they never come this way (FirstAttempt counts a failure).
        task = watching = None
        if limit is not None:  # >= watchdog.MIN_LIMIT: Route.fast says so
            loop = req.loop
            watching = dog
            if loop is not dog_loop or watching is None:
                dog_loop, dog = loop, _watchdog.of(loop)
                dog_clock = monotonic and dog.stock
                watching = dog
            task = _current_task(loop)
            assert task is not None, "aiohttp requests run inside a task"
            if dog_clock:  # the watchdog's clock is ours: no second reading
                due = started + limit  # Watchdog.watch_at
                # `outer` is `due` itself unless an attempt of this task encloses this one.
                outer = watching.deadlines.setdefault(task, due)
                if outer is not due or task.cancelling() or due < watching.next_at:
                    # The rare cases, as the watchdog does them: an enclosing attempt watched
                    # already (a protected call inside another), a task being cancelled, a
                    # sweep to move sooner.
                    outer = watching.watch_at(task, due)
            else:
                due, outer = watching.watch(task, limit)
        result: Attempt | None = None
        exc: Exception | None = None
        try:
            resp = await handler(req)
            if resp.status >= 400:
                result = await _failed(resp, req.method)
        except Exception as caught:
            exc = caught
        except asyncio.CancelledError as cancelled:
            if (
                watching is None
                or task is None
                or limit is None
                or not watching.timed_out(task, due)
            ):
                with state.lock:
                    state.begin(started)  # started, then cancelled: never retried
                raise
            exc = answered_before(attempt_timeout(limit), cancelled)
        finally:
            if watching is not None and task is not None:  # Watchdog.done
                if outer is due:
                    watching.deadlines.pop(task, None)
                    if watching.base:
                        watching.base.pop(task, None)
                else:  # inside another watched attempt (a protected call): its deadline again
                    watching.done(task, due, outer)
        ended = clock()
        lock = state.lock  # threads (sync calls) may share this key's state
        lock.acquire()
        try:
            budget = state.budget  # RetryBudget.on_request, written out (a call less)
            if started >= budget.next_at:
                budget.advance(started)
            budget.pending += 1
            if result is None and exc is None:
                breaker = state.breaker
                if not breaker.quiet:
                    breaker.succeeded()
                state.stats.lean_success(ended - started)  # its request, attempt, success
                return resp
            state.stats.began()  # the rest of KeyState.begin
        finally:
            lock.release()
        first = FirstAttempt(started, ended, result, exc)
        return await _through_run(sw, route, req, handler, first)

    return seawall_middleware
