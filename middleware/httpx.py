"""The httpx transports: ``httpx.AsyncClient(transport=sw.httpx_transport())`` and
``httpx.Client(transport=sw.httpx_transport(sync=True))``.

``AsyncTransport`` and ``SyncTransport`` wrap another transport
(``httpx.AsyncHTTPTransport()`` / ``httpx.HTTPTransport()`` by default) and
send each request through seawall, as the aiohttp middleware does:
classification, retries with server hints, breaker, budget, deadlines, and
costs on LLM routes. A response is returned as the inner transport gave it;
only an error body (up to 64 KiB, to classify it) and, on LLM routes, a
successful JSON body (to price it) are read first and replayed to the
caller. A streamed (SSE) answer is watched as it passes, never held.

Seawall's own errors raised through them are ``httpx.TransportError`` twins
(``DeadlineExceededError`` is an ``httpx.TimeoutException``), so the OpenAI
SDK maps them as it maps any transport error, and ``seawall.unwrap()`` finds
the seawall error inside the SDK's. The sync transport runs the attempts in
the calling thread: waits sleep the thread, and httpx's own timeouts bound
each attempt (seawall cannot interrupt a thread, so ``TimeoutPolicy.attempt``
is not applied; a deadline sooner than it bounds httpx's timeouts). The
same transports for httpx2 (the Anthropic SDK's): ``seawall.httpx2``. Both
are bindings of ``seawall.httpx_transport``.

Needs the optional extra: ``pip install 'seawall[httpx]'``.
"""

from __future__ import annotations

import httpx

from seawall import httpx_core
from seawall.errors import (
    CircuitOpenError,
    DeadlineExceededError,
    RetriesExhaustedError,
    RetryBudgetExhaustedError,
)
from seawall.httpx_transport import AsyncCore, SyncCore

__all__ = [
    "HTTPX_TWINS",
    "AsyncTransport",
    "HttpxCircuitOpenError",
    "HttpxDeadlineExceededError",
    "HttpxRetriesExhaustedError",
    "HttpxRetryBudgetExhaustedError",
    "SyncTransport",
]

#: Maps each seawall error to its httpx twin (a subclass of both).
HTTPX_TWINS = httpx_core.twins(httpx)
HttpxCircuitOpenError = HTTPX_TWINS[CircuitOpenError]
HttpxRetryBudgetExhaustedError = HTTPX_TWINS[RetryBudgetExhaustedError]
HttpxDeadlineExceededError = HTTPX_TWINS[DeadlineExceededError]
HttpxRetriesExhaustedError = HTTPX_TWINS[RetriesExhaustedError]


class AsyncTransport(AsyncCore[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` that sends requests through a ``Seawall``."""

    kind = httpx_core.kind(httpx, sync=False)


class SyncTransport(SyncCore[httpx.BaseTransport], httpx.BaseTransport):
    """An ``httpx.BaseTransport`` (``httpx.Client``'s) that sends requests through a ``Seawall``."""

    kind = httpx_core.kind(httpx, sync=True)
