"""The sync httpx transport: ``httpx.Client(transport=sw.httpx_transport(sync=True))``.

``SyncTransport`` is ``seawall.httpx.AsyncTransport`` for ``httpx.Client``:
it wraps another transport (``httpx.HTTPTransport()`` by default) and sends
each request through seawall's attempt loop in the calling thread
(``seawall._path.threads``), with the same classification, retries with
server hints, breaker, budget, deadline, costs on LLM routes, error twins
(``httpx.TransportError`` subclasses) and "SDK retries too" warning. Waits
between attempts sleep the thread. httpx's own timeouts bound each attempt
(seawall cannot interrupt a thread, so ``TimeoutPolicy.attempt`` is not applied).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx

from seawall import costs, sync
from seawall._body import ERROR_BODY_LIMIT
from seawall._path.spec import Attempt, BrokenBody, CallSpec
from seawall.errors import SeawallError
from seawall.httpx import (
    _STREAMING,
    _content_type,
    _decoded,
    account_body,
    cost_reading,
    request_spec,
    stream_usage,
    too_long,
    warn_sdk_retries,
)
from seawall.policy import IDEMPOTENT_METHODS

if TYPE_CHECKING:
    from seawall.engine import Seawall

__all__ = ["SyncTransport"]


def _discard(value: Any) -> None:
    """Close a response the loop will not return (a retried failure)."""
    if isinstance(value, httpx.Response):
        value.close()


class _Replay(httpx.SyncByteStream):
    """The chunks already read, then the rest of the original stream; closes the original."""

    def __init__(
        self,
        head: list[bytes],
        rest: Iterator[bytes] | None,
        original: httpx.SyncByteStream,
        tap: Callable[[bytes], None] | None = None,
    ) -> None:
        self._head = head
        self._rest = rest
        self._original = original
        self._tap = tap

    def __iter__(self) -> Iterator[bytes]:
        tap = self._tap
        yield from self._head
        self._head = []
        rest = self._rest if self._rest is not None else iter(self._original)
        for chunk in rest:
            if tap is not None:
                tap(chunk)  # before handing it on: an SDK stops reading at "[DONE]"
            yield chunk
        self._finish()

    def _finish(self) -> None:
        tap, self._tap = self._tap, None
        if tap is not None:
            tap(b"")

    def close(self) -> None:
        self._finish()  # an SDK closes the stream without reading past its end
        self._original.close()


def _peek(resp: httpx.Response, limit: int) -> bytes | None:
    """Up to ``limit`` raw bytes of ``resp``'s body, leaving the whole body readable."""
    if too_long(resp, limit):
        return None
    original = resp.stream
    assert isinstance(original, httpx.SyncByteStream), "a sync transport's response"
    parts: list[bytes] = []
    size = 0
    rest = iter(original)
    ended = False
    while size <= limit:
        chunk = next(rest, None)
        if chunk is None:
            ended = True
            break
        parts.append(chunk)
        size += len(chunk)
    body = b"".join(parts)
    if ended:
        original.close()  # read to its end: the connection goes back to the pool
        resp.stream = httpx.ByteStream(body)
    else:
        resp.stream = _Replay(parts, rest, original)
    return body[:limit]


def _failed(resp: httpx.Response, method: str) -> Attempt:
    """An error response, with the start of its body for the classifiers."""
    content_type = _content_type(resp)
    body = None
    if content_type != _STREAMING and method != "HEAD":
        try:
            body = _decoded(resp, _peek(resp, ERROR_BODY_LIMIT))
        except BaseException as exc:
            resp.close()
            if isinstance(exc, Exception) and method not in IDEMPOTENT_METHODS:
                raise BrokenBody(exc, resp.status_code) from exc
            raise
    return Attempt(resp, resp.status_code, resp.headers, body, content_type)


def _watch_cost(sw: Seawall, key: str, url: str, resp: httpx.Response) -> None:
    """Read the usage of a successful LLM answer, leaving the body whole for the caller."""
    how = cost_reading(resp)
    if how == "stream":
        original = resp.stream
        assert isinstance(original, httpx.SyncByteStream), "a sync transport's response"
        resp.stream = _Replay([], None, original, stream_usage(sw, key, url))
    elif how == "json":
        try:
            raw = _peek(resp, costs.SUCCESS_BODY_LIMIT)
        except BaseException:
            resp.close()
            raise
        account_body(sw, key, url, resp, raw)


class SyncTransport(httpx.BaseTransport):
    """An ``httpx.BaseTransport`` that sends requests through a ``Seawall``.

    ``transport`` is the one that really sends them (default:
    ``httpx.HTTPTransport()``); closing this one closes it.
    """

    def __init__(self, sw: Seawall, transport: httpx.BaseTransport | None = None) -> None:
        self.sw = sw
        self.transport = transport if transport is not None else httpx.HTTPTransport()
        self._warned = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._warned = self._warned or warn_sdk_retries(request)
        spec = request_spec(self.sw, request, _discard)
        attempts = sync.run(self.sw, spec)
        try:
            for attempt in attempts:
                with attempt:
                    attempt.result = self._attempt(spec, request)
        except SeawallError as exc:
            if isinstance(exc, httpx.RequestError):
                exc.request = request
            raise
        response: httpx.Response = attempts.value
        return response

    def _attempt(self, spec: CallSpec, request: httpx.Request) -> Attempt:
        resp = self.transport.handle_request(request)
        status = resp.status_code
        method = request.method
        if status < 400:
            if spec.llm and method != "HEAD":
                try:
                    _watch_cost(self.sw, spec.key, str(spec.redacted_url), resp)
                except Exception as exc:
                    # A success status: whatever happens to the body, never re-sent.
                    raise BrokenBody(exc, status) from exc
            return Attempt(resp, status, resp.headers)
        return _failed(resp, method)

    def close(self) -> None:
        self.transport.close()
