"""The httpx transport: ``httpx.AsyncClient(transport=sw.httpx_transport())``.

``AsyncTransport`` wraps another transport (``httpx.AsyncHTTPTransport()`` by
default) and sends each request through ``Seawall.run``, as the aiohttp
middleware does: classification, retries with server hints, breaker, budget,
deadlines, and costs on LLM routes. A response is returned as the inner
transport gave it; only an error body (up to 64 KiB, to classify it) and, on
LLM routes, a successful JSON body (to price it) are read first and replayed
to the caller. A streamed (SSE) answer is watched as it passes, never held.

Seawall's own errors raised through it are ``httpx.TransportError`` twins
(``DeadlineExceededError`` is an ``httpx.TimeoutException``), so the OpenAI
and Anthropic SDKs map them as they map any transport error, and
``seawall.unwrap()`` finds the seawall error inside the SDK's.

Needs the optional extra: ``pip install 'seawall[httpx]'``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx
from yarl import URL

from seawall import costs
from seawall._body import ERROR_BODY_LIMIT
from seawall._path.spec import Attempt, BrokenBody, CallSpec
from seawall.context import current_context
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
    "HTTPX_TWINS",
    "AsyncTransport",
    "HttpxCircuitOpenError",
    "HttpxDeadlineExceededError",
    "HttpxRetriesExhaustedError",
    "HttpxRetryBudgetExhaustedError",
]

logger = logging.getLogger("seawall.httpx")

# --- the error twins ----------------------------------------------------------------


class HttpxCircuitOpenError(CircuitOpenError, httpx.TransportError):
    """``CircuitOpenError`` raised from the httpx transport."""


class HttpxRetryBudgetExhaustedError(RetryBudgetExhaustedError, httpx.TransportError):
    """``RetryBudgetExhaustedError`` raised from the httpx transport."""


class HttpxDeadlineExceededError(DeadlineExceededError, httpx.TimeoutException):
    """``DeadlineExceededError`` raised from the httpx transport (a timeout to httpx)."""


class HttpxRetriesExhaustedError(RetriesExhaustedError, httpx.TransportError):
    """``RetriesExhaustedError`` raised from the httpx transport."""


#: Maps each error to its httpx-compatible twin.
HTTPX_TWINS: dict[type[SeawallError], type[SeawallError]] = {
    CircuitOpenError: HttpxCircuitOpenError,
    RetryBudgetExhaustedError: HttpxRetryBudgetExhaustedError,
    DeadlineExceededError: HttpxDeadlineExceededError,
    RetriesExhaustedError: HttpxRetriesExhaustedError,
}

_STREAMING = "text/event-stream"
_SDK_RETRY_HEADER = "x-stainless-retry-count"

# Closing a discarded response is async; the loop's discard is not. The tasks
# are kept here until they end (the event loop holds only weak references).
_closing: set[asyncio.Task[None]] = set()


def _content_type(resp: httpx.Response) -> str:
    value: str = resp.headers.get("content-type", "")
    return value.partition(";")[0].strip().lower()


def _encoded(resp: httpx.Response) -> bool:
    """Whether the raw body is compressed (the transport sees it before httpx decodes it)."""
    value: str = resp.headers.get("content-encoding", "identity")
    return value.strip().lower() != "identity"


def _discard(value: Any) -> None:
    """Close a response the loop will not return (a retried failure)."""
    if isinstance(value, httpx.Response) and not isinstance(value.stream, httpx.ByteStream):
        task = asyncio.get_running_loop().create_task(value.aclose())
        _closing.add(task)
        task.add_done_callback(_closing.discard)


class _Replay(httpx.AsyncByteStream):
    """The chunks already read, then the rest of the original stream; closes the original."""

    def __init__(
        self,
        head: list[bytes],
        rest: AsyncIterator[bytes] | None,
        original: httpx.AsyncByteStream,
        tap: Callable[[bytes], None] | None = None,
    ) -> None:
        self._head = head
        self._rest = rest
        self._original = original
        self._tap = tap

    async def __aiter__(self) -> AsyncIterator[bytes]:
        tap = self._tap
        for chunk in self._head:
            yield chunk
        self._head = []
        rest = self._rest if self._rest is not None else aiter(self._original)
        async for chunk in rest:
            yield chunk
            if tap is not None:
                tap(chunk)
        if tap is not None:
            tap(b"")

    async def aclose(self) -> None:
        await self._original.aclose()


async def _peek(resp: httpx.Response, limit: int) -> bytes | None:
    """Up to ``limit`` raw bytes of ``resp``'s body, leaving the whole body readable.

    ``None`` without reading when the declared length is above ``limit``. A
    body read to its end is closed at once (the connection goes back to the
    pool) and replayed from memory; a longer one is replayed from what was
    read followed by the rest.
    """
    if too_long(resp, limit):
        return None
    original = resp.stream
    assert isinstance(original, httpx.AsyncByteStream), "an async transport's response"
    parts: list[bytes] = []
    size = 0
    rest = aiter(original)
    ended = False
    while size <= limit:
        try:
            chunk = await anext(rest)
        except StopAsyncIteration:
            ended = True
            break
        parts.append(chunk)
        size += len(chunk)
    body = b"".join(parts)
    if ended:
        await original.aclose()
        resp.stream = httpx.ByteStream(body)
    else:
        resp.stream = _Replay(parts, rest, original)
    return body[:limit]


def _decoded(resp: httpx.Response, raw: bytes | None) -> bytes | None:
    """``raw`` as the caller will read it (decompressed); ``None`` if it cannot be."""
    if raw is None or not _encoded(resp):
        return raw
    try:
        scratch = httpx.Response(
            200, headers={"content-encoding": resp.headers["content-encoding"]}
        )
        scratch.stream = httpx.ByteStream(raw)
        return scratch.read()
    except httpx.DecodingError:
        return None  # cut short at the limit, or not what the header says


async def _failed(resp: httpx.Response, method: str) -> Attempt:
    """An error response, with the start of its body for the classifiers.

    A request that is not idempotent by HTTP semantics whose error body
    breaks off is never re-sent: the server has seen it.
    """
    content_type = _content_type(resp)
    body = None
    if content_type != _STREAMING and method != "HEAD":
        try:
            body = _decoded(resp, await _peek(resp, ERROR_BODY_LIMIT))
        except BaseException as exc:
            await asyncio.shield(resp.aclose())
            if isinstance(exc, Exception) and method not in IDEMPOTENT_METHODS:
                raise BrokenBody(exc, resp.status_code) from exc
            raise
    return Attempt(resp, resp.status_code, resp.headers, body, content_type)


def cost_reading(resp: httpx.Response) -> str:
    """How to read a successful LLM answer's usage: ``"stream"`` (tap it as it passes),
    ``"json"`` (peek at the body), or ``""`` (nothing to read)."""
    content_type = _content_type(resp)
    if content_type == _STREAMING and not _encoded(resp):
        return "stream"
    return "json" if content_type == "application/json" else ""


def stream_usage(sw: Seawall, key: str, url: str) -> costs.StreamUsage:
    """A tap that accounts a streamed answer's usage when the stream ends."""

    def done(usage: costs.Usage) -> None:
        costs.account(sw.cost_tracker, sw.hooks, key, url, usage, streamed=True)

    return costs.StreamUsage(done)


def account_body(sw: Seawall, key: str, url: str, resp: httpx.Response, raw: bytes | None) -> None:
    """Account the usage in a JSON answer's (raw) body, if it has one."""
    body = _decoded(resp, raw)
    usage = costs.usage_from_json(body) if body else None
    if usage is not None:
        costs.account(sw.cost_tracker, sw.hooks, key, url, usage)


def too_long(resp: httpx.Response, limit: int) -> bool:
    """Whether the declared length is above ``limit`` (then the body is not peeked at)."""
    length = resp.headers.get("content-length")
    return length is not None and length.isdigit() and int(length) > limit


async def _watch_cost(sw: Seawall, key: str, url: str, resp: httpx.Response) -> None:
    """Read the usage of a successful LLM answer, leaving the body whole for the caller."""
    how = cost_reading(resp)
    if how == "stream":
        original = resp.stream
        assert isinstance(original, httpx.AsyncByteStream), "an async transport's response"
        resp.stream = _Replay([], None, original, stream_usage(sw, key, url))
    elif how == "json":
        try:
            raw = await _peek(resp, costs.SUCCESS_BODY_LIMIT)
        except BaseException:
            await asyncio.shield(resp.aclose())
            raise
        account_body(sw, key, url, resp, raw)


def _request_body(request: httpx.Request) -> bytes | None:
    """The request's body when it is in memory (``json=``, ``content=b"..."``); else ``None``."""
    if not isinstance(request.stream, httpx.ByteStream):
        return None
    try:
        return request.content
    except httpx.RequestNotRead:  # pragma: no cover - a ByteStream is always read
        return None


def warn_sdk_retries(request: httpx.Request) -> bool:
    """Warn (once per transport: the caller keeps the flag) when an SDK re-sends a request."""
    if request.headers.get(_SDK_RETRY_HEADER, "0") in ("", "0"):
        return False
    logger.warning(
        "an SDK client is retrying a request seawall already retried (its "
        "max_retries is not 0), which multiplies attempts: create the client with "
        "max_retries=0 and let seawall retry"
    )
    return True


def request_spec(sw: Seawall, request: httpx.Request, discard: Callable[[Any], None]) -> CallSpec:
    """The ``CallSpec`` of one httpx request (the async and the sync transport alike)."""
    url = URL(str(request.url), encoded=True)
    route = sw.registry.route_for(url)
    key, policy = route.key, route.policy
    method = request.method
    if policy.key == "model":
        body = _request_body(request)
        model = model_from_json(body) if body and len(body) <= MODEL_BODY_LIMIT else None
        key = f"{key}#{model}" if model else key
        state = sw.registry.state_for(key, policy)
    else:
        state = route.state = route.state or sw.registry.state_for(key, policy)
    return CallSpec(
        key=key,
        policy=policy,
        state=state,
        method=method,
        url=url,
        context=current_context(),
        idempotent=method in policy.retry.retry_methods or "idempotency-key" in request.headers,
        replayable=lambda: isinstance(request.stream, httpx.ByteStream),
        discard=discard,
        http=True,
        llm=route.llm,
        twins=HTTPX_TWINS,
    )


class AsyncTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` that sends requests through a ``Seawall``.

    ``transport`` is the one that really sends them (default:
    ``httpx.AsyncHTTPTransport()``); closing this one closes it.
    """

    def __init__(self, sw: Seawall, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.sw = sw
        self.transport = transport if transport is not None else httpx.AsyncHTTPTransport()
        self._warned = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._warned = self._warned or warn_sdk_retries(request)
        spec = request_spec(self.sw, request, _discard)
        try:
            response: httpx.Response = await self.sw.run(spec, self._attempts(spec, request))
        except SeawallError as exc:
            if isinstance(exc, httpx.RequestError):
                exc.request = request
            raise
        return response

    def _attempts(
        self, spec: CallSpec, request: httpx.Request
    ) -> Callable[[int], Awaitable[Attempt]]:
        sw, inner, method, llm = self.sw, self.transport, request.method, spec.llm

        async def attempt(_number: int) -> Attempt:
            resp = await inner.handle_async_request(request)
            status = resp.status_code
            if status < 400:
                if llm and method != "HEAD":
                    try:
                        await _watch_cost(sw, spec.key, str(spec.redacted_url), resp)
                    except Exception as exc:
                        # A success status: whatever happens to the body, never re-sent.
                        raise BrokenBody(exc, status) from exc
                return Attempt(resp, status, resp.headers)
            return await _failed(resp, method)

        return attempt

    async def aclose(self) -> None:
        await self.transport.aclose()
