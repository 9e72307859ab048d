"""The httpx2 transports, for the Anthropic SDK (and any httpx2 client):
``httpx2.AsyncClient(transport=sw.httpx_transport(package="httpx2"))``.

httpx2 is a fork of httpx with the same API in classes of its own (an
``httpx2.AsyncClient`` takes only an ``httpx2.AsyncBaseTransport``). These are
``seawall.httpx``'s transports for it, the same code (``seawall.httpx_transport``)
bound to httpx2's classes: seawall's errors raised through them are
``httpx2.TransportError`` twins (``Httpx2CircuitOpenError``, ...; the deadline's
is an ``httpx2.TimeoutException``), which the Anthropic SDK raises as
``anthropic.APIConnectionError`` (``APITimeoutError``), with seawall's error
inside (``seawall.unwrap``).

Needs httpx2 (``pip install httpx2``; the Anthropic SDK depends on it).
"""

from __future__ import annotations

import httpx2

from seawall import httpx_core
from seawall.errors import (
    CircuitOpenError,
    DeadlineExceededError,
    RetriesExhaustedError,
    RetryBudgetExhaustedError,
)
from seawall.httpx_transport import AsyncCore, SyncCore

__all__ = [
    "HTTPX2_TWINS",
    "AsyncTransport",
    "Httpx2CircuitOpenError",
    "Httpx2DeadlineExceededError",
    "Httpx2RetriesExhaustedError",
    "Httpx2RetryBudgetExhaustedError",
    "SyncTransport",
]

#: Maps each seawall error to its httpx2 twin (a subclass of both).
HTTPX2_TWINS = httpx_core.twins(httpx2)
Httpx2CircuitOpenError = HTTPX2_TWINS[CircuitOpenError]
Httpx2RetryBudgetExhaustedError = HTTPX2_TWINS[RetryBudgetExhaustedError]
Httpx2DeadlineExceededError = HTTPX2_TWINS[DeadlineExceededError]
Httpx2RetriesExhaustedError = HTTPX2_TWINS[RetriesExhaustedError]


class AsyncTransport(AsyncCore[httpx2.AsyncBaseTransport], httpx2.AsyncBaseTransport):
    """An ``httpx2.AsyncBaseTransport`` that sends requests through a ``Seawall``."""

    kind = httpx_core.kind(httpx2, sync=False)


class SyncTransport(SyncCore[httpx2.BaseTransport], httpx2.BaseTransport):
    """An ``httpx2.BaseTransport`` (``httpx2.Client``'s) that sends requests through seawall."""

    kind = httpx_core.kind(httpx2, sync=True)
