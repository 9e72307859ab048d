"""The httpx transports' one implementation: httpx and httpx2, async and sync.

httpx2 (the fork of httpx the Anthropic SDK takes) has httpx's API in
classes of its own, so a transport for one is no transport for the other. The
code here names neither package: a ``Kind`` (built once per package and
direction by ``kind``) holds what differs, the package's classes and how a
body is read (awaited, or read in the thread). The transports are in
``seawall.httpx_transport``; the bindings (``seawall.httpx``, ``seawall.httpx2``)
mix them into each package's own base transport.

The body steps (peek at an error body, price an LLM answer) are coroutines
written once. The async transport awaits them; the sync one runs them with
``run_sync``: its streams never suspend, so the coroutine ends at its first step.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from seawall import costs
from seawall._body import ERROR_BODY_LIMIT, ERROR_BODY_WAIT
from seawall._path.spec import Attempt, BrokenBody, CallSpec, mark_answered
from seawall.errors import (
    CircuitOpenError,
    DeadlineExceededError,
    RetriesExhaustedError,
    RetryBudgetExhaustedError,
    SeawallError,
)
from seawall.httpx_replay import AsyncReplay, Resumed, SyncReplay
from seawall.inflate import inflated_start
from seawall.policy import IDEMPOTENT_METHODS

if TYPE_CHECKING:
    from seawall.engine import Seawall

__all__ = ["STREAMING", "AsyncKind", "Kind", "SyncKind", "kind", "run_sync", "twins"]

T = TypeVar("T")

STREAMING = "text/event-stream"

# Closing a discarded response is async; the loop's discard is not. The tasks
# are kept here until they end (the event loop holds only weak references).
_closing: set[asyncio.Task[None]] = set()


def run_sync(step: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends (its awaits are on sync streams)."""
    try:
        step.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    step.close()
    msg = "unreachable: a sync transport's step suspended"  # pragma: no cover
    raise AssertionError(msg)  # pragma: no cover


# --- the package's classes ------------------------------------------------------------


@functools.cache
def twins(mod: ModuleType) -> dict[type[SeawallError], type[SeawallError]]:
    """Seawall's errors as ``mod``'s transport errors (``HttpxCircuitOpenError``, ...),
    made once per package (``except`` needs the same classes every time).

    Each is both: ``except httpx.TransportError`` (or ``httpx2.``) and
    ``except seawall.CircuitOpenError`` catch it. ``DeadlineExceededError``'s
    twin is a ``TimeoutException``.
    """
    prefix = "Httpx2" if mod.__name__ == "httpx2" else "Httpx"
    made: dict[type[SeawallError], type[SeawallError]] = {}
    for error in (CircuitOpenError, RetryBudgetExhaustedError, RetriesExhaustedError):
        made[error] = _twin(prefix, error, mod.TransportError, mod.__name__)
    made[DeadlineExceededError] = _twin(
        prefix, DeadlineExceededError, mod.TimeoutException, mod.__name__
    )
    return made


def _twin(prefix: str, error: type[SeawallError], base: type, package: str) -> type[SeawallError]:
    doc = f"``{error.__name__}`` raised from the {package} transport: a ``{base.__name__}``."
    made: type[SeawallError] = type(
        f"{prefix}{error.__name__}",
        (error, base),
        {"__doc__": doc, "__module__": f"seawall.{package}"},
    )
    return made


# --- what differs: the package and the direction -------------------------------------


class Kind:
    """One package (``mod``: httpx or httpx2) in one direction (async or sync)."""

    replay: Callable[..., Any]

    def __init__(self, mod: ModuleType) -> None:
        self.mod = mod
        self.twins = twins(mod)

    # Each of these is a coroutine for both directions; the sync ones never suspend.
    async def send(self, transport: Any, request: Any) -> Any:
        raise NotImplementedError

    async def next_chunk(self, chunks: Any) -> bytes | None:
        raise NotImplementedError

    async def chunk_by(self, chunks: Any, until: float) -> tuple[bytes | None, Any]:
        """The next chunk, if it comes by ``until`` (``time.monotonic``); else ``(None, the
        read still going)``, for ``resumed`` to hand on."""
        return await self.next_chunk(chunks), None  # (sync: a read cannot be left going)

    def resumed(self, pending: Any, rest: Any) -> Any:
        """The rest of a body whose next read (``pending``) was still going."""
        raise NotImplementedError

    async def close_stream(self, stream: Any) -> None:
        raise NotImplementedError

    async def close_response(self, resp: Any) -> None:
        raise NotImplementedError

    def chunks(self, stream: Any) -> Any:
        raise NotImplementedError

    def default(self) -> Any:
        """The package's own HTTP transport, wrapped when none is given."""
        raise NotImplementedError

    def discard(self, value: Any) -> None:
        """Close a response the loop will not return (a retried failure)."""
        raise NotImplementedError


class AsyncKind(Kind):
    def __init__(self, mod: ModuleType) -> None:
        super().__init__(mod)
        self.replay = type("Replay", (AsyncReplay, mod.AsyncByteStream), {})

    async def send(self, transport: Any, request: Any) -> Any:
        return await transport.handle_async_request(request)

    def default(self) -> Any:
        return self.mod.AsyncHTTPTransport()

    def chunks(self, stream: Any) -> Any:
        return aiter(stream)

    async def next_chunk(self, chunks: Any) -> bytes | None:
        try:
            chunk: bytes = await anext(chunks)
        except StopAsyncIteration:
            return None
        return chunk

    async def chunk_by(self, chunks: Any, until: float) -> tuple[bytes | None, Any]:
        # Not cut with a timeout: cancelling a read inside httpcore's iterator ends it, and
        # the caller would lose the rest of the body. The read goes on for the caller.
        read = asyncio.ensure_future(self.next_chunk(chunks))
        try:
            done, _ = await asyncio.wait((read,), timeout=max(0.0, until - time.monotonic()))
        except BaseException:
            read.cancel()
            raise
        return (read.result(), None) if done else (None, read)

    def resumed(self, pending: Any, rest: Any) -> Any:
        return Resumed(pending, rest)

    async def close_stream(self, stream: Any) -> None:
        await stream.aclose()

    async def close_response(self, resp: Any) -> None:
        await asyncio.shield(resp.aclose())

    def discard(self, value: Any) -> None:
        if isinstance(value, self.mod.Response) and not isinstance(
            value.stream, self.mod.ByteStream
        ):
            task = asyncio.get_running_loop().create_task(value.aclose())
            _closing.add(task)
            task.add_done_callback(_closing.discard)


class SyncKind(Kind):
    def __init__(self, mod: ModuleType) -> None:
        super().__init__(mod)
        self.replay = type("Replay", (SyncReplay, mod.SyncByteStream), {})

    async def send(self, transport: Any, request: Any) -> Any:
        return transport.handle_request(request)

    def default(self) -> Any:
        return self.mod.HTTPTransport()

    def chunks(self, stream: Any) -> Any:
        return iter(stream)

    async def next_chunk(self, chunks: Any) -> bytes | None:
        chunk: bytes | None = next(chunks, None)
        return chunk

    async def close_stream(self, stream: Any) -> None:
        stream.close()

    async def close_response(self, resp: Any) -> None:
        resp.close()

    def discard(self, value: Any) -> None:
        if isinstance(value, self.mod.Response):
            value.close()


@functools.cache
def kind(mod: ModuleType, sync: bool) -> Kind:
    """The ``Kind`` of ``mod`` (httpx or httpx2) in one direction, made once."""
    return SyncKind(mod) if sync else AsyncKind(mod)


# --- reading bodies, once for every kind ---------------------------------------------


def content_type(resp: Any) -> str:
    value: str = resp.headers.get("content-type", "")
    return value.partition(";")[0].strip().lower()


def encoded(resp: Any) -> bool:
    """Whether the raw body is compressed (the transport sees it before httpx decodes it)."""
    value: str = resp.headers.get("content-encoding", "identity")
    return value.strip().lower() != "identity"


def too_long(resp: Any, limit: int) -> bool:
    """Whether the declared length is above ``limit`` (then the body is not peeked at)."""
    length = resp.headers.get("content-length")
    return length is not None and length.isdigit() and int(length) > limit


async def peek(kind: Kind, resp: Any, limit: int, wait: float | None = None) -> bytes | None:
    """Up to ``limit`` raw bytes of ``resp``'s body, leaving the whole body readable.

    ``None`` without reading when the declared length is above ``limit``. A
    body read to its end is closed at once (the connection goes back to the
    pool) and replayed from memory; a longer one is replayed from what was
    read followed by the rest. With ``wait``: what came within that many
    seconds (async: a read still going is handed on, not cut; sync: each read
    is bounded by the client's own read timeout), then the rest.
    """
    if too_long(resp, limit):
        return None
    original = resp.stream
    rest = kind.chunks(original)
    until = None if wait is None else time.monotonic() + wait
    parts: list[bytes] = []
    size = 0
    ended = False
    while size <= limit:
        if until is None:
            chunk = await kind.next_chunk(rest)
        else:
            chunk, pending = await kind.chunk_by(rest, until)
            if pending is not None:  # the body is slow: the caller gets the read going
                rest = kind.resumed(pending, rest)
                break
        if chunk is None:
            ended = True
            break
        parts.append(chunk)
        size += len(chunk)
        if until is not None and time.monotonic() >= until:
            break  # the body is slow (sync: the next read may block as long again)
    body = b"".join(parts)
    if ended:
        await kind.close_stream(original)
        resp.stream = kind.mod.ByteStream(body)
    else:
        resp.stream = kind.replay(parts, rest, original)
    return body[:limit]


def decoded(resp: Any, raw: bytes | None, limit: int) -> bytes | None:
    """The first ``limit`` bytes of ``raw`` (the body's start as it came: httpx decodes it
    for the caller later) as the caller will read them; ``None`` if they cannot be told
    (``seawall.inflate.inflated_start``: the response is classified without its body)."""
    if raw is None:
        return None
    return inflated_start(resp.headers.get("content-encoding", ""), raw, limit)


async def failed(kind: Kind, resp: Any, method: str) -> Attempt:
    """An error response, with the start of its body for the classifiers.

    A request that is not idempotent by HTTP semantics whose error body
    breaks off is never re-sent: the server has seen it.
    """
    kind_of = content_type(resp)
    body = None
    if kind_of != STREAMING and method != "HEAD":
        try:
            raw = await peek(kind, resp, ERROR_BODY_LIMIT, ERROR_BODY_WAIT)
            body = decoded(resp, raw, ERROR_BODY_LIMIT)
        except BaseException as exc:
            await kind.close_response(resp)
            if method not in IDEMPOTENT_METHODS:
                if isinstance(exc, Exception):
                    raise BrokenBody(exc, resp.status_code) from exc
                if isinstance(exc, asyncio.CancelledError):
                    mark_answered(exc, resp.status_code)  # nor when its time limit cuts it
            raise
    return Attempt(resp, resp.status_code, resp.headers, body, kind_of)


async def watch_cost(kind: Kind, sw: Seawall, spec: CallSpec, url: str, resp: Any) -> None:
    """Read the usage of a successful LLM answer, leaving the body whole for the caller.

    A stream (not compressed) is tapped as it passes and counted once however it
    ends (``seawall.httpx_replay`` says when); a JSON body is peeked at.
    """
    kind_of = content_type(resp)
    key = spec.key
    if kind_of == STREAMING and not encoded(resp):
        by_model = spec.policy.key == "model"
        tap = costs.stream_usage(sw.cost_tracker, sw.hooks, key, url, by_model)
        resp.stream = kind.replay([], None, resp.stream, tap)
    elif kind_of == "application/json":
        try:
            raw = await peek(kind, resp, costs.SUCCESS_BODY_LIMIT)
        except BaseException:
            await kind.close_response(resp)
            raise
        body = decoded(resp, raw, costs.SUCCESS_BODY_LIMIT)
        usage = costs.usage_from_json(body) if body else None
        if usage is not None:
            costs.account(sw.cost_tracker, sw.hooks, key, url, usage)


async def attempt(kind: Kind, sw: Seawall, spec: CallSpec, transport: Any, request: Any) -> Attempt:
    """One attempt: send ``request`` through ``transport``; an error body is peeked at,
    an LLM answer priced."""
    resp = await kind.send(transport, request)
    status = resp.status_code
    method = request.method
    if status < 400:
        if spec.llm and spec.policy.costs and method != "HEAD":  # costs=False: not read
            try:
                await watch_cost(kind, sw, spec, str(spec.redacted_url), resp)
            except Exception as exc:
                # A success status: whatever happens to the body, never re-sent.
                raise BrokenBody(exc, status) from exc
            except asyncio.CancelledError as cancelled:
                mark_answered(cancelled, status)  # nor when the attempt's time limit cuts it
                raise
        return Attempt(resp, status, resp.headers)
    return await failed(kind, resp, method)
