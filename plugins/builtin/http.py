"""The built-in HTTP status classifier.

2xx/3xx succeed. 408, 425, 429, 500, 502, 503, 504 and 529 are retryable;
409 is retryable once; 401 and 403 escalate; other 4xx are the caller's to
fix. ``Retry-After``/``retry-after-ms`` become ``retry_after`` and
``x-should-retry`` overrides whether to retry.
"""

from __future__ import annotations

import attrs

from seawall.outcome import SUCCESS, Category, Classification, Outcome, Severity
from seawall.plugins import hookimpl
from seawall.retry_after import server_wait, should_retry_header

__all__ = ["classify_status", "seawall_classify"]

_C = Classification
_TABLE: dict[int, Classification] = {
    400: _C(category=Category.VALIDATION, reason="HTTP 400 Bad Request"),
    401: _C(
        category=Category.AUTHENTICATION,
        severity=Severity.HIGH,
        escalate=True,
        reason="HTTP 401 Unauthorized: check the credentials",
    ),
    403: _C(
        category=Category.AUTHORIZATION,
        severity=Severity.HIGH,
        escalate=True,
        reason="HTTP 403 Forbidden: check the credentials' permissions",
    ),
    404: _C(category=Category.CLIENT, reason="HTTP 404 Not Found"),
    405: _C(category=Category.CLIENT, reason="HTTP 405 Method Not Allowed"),
    408: _C(
        category=Category.TIMEOUT,
        severity=Severity.MEDIUM,
        retryable=True,
        counts_as_failure=True,
        reason="HTTP 408 Request Timeout",
    ),
    409: _C(
        category=Category.CONFLICT,
        retryable=True,
        max_retries=1,
        reason="HTTP 409 Conflict",
    ),
    410: _C(category=Category.CLIENT, reason="HTTP 410 Gone"),
    413: _C(category=Category.VALIDATION, reason="HTTP 413 Content Too Large"),
    414: _C(category=Category.VALIDATION, reason="HTTP 414 URI Too Long"),
    415: _C(category=Category.VALIDATION, reason="HTTP 415 Unsupported Media Type"),
    422: _C(category=Category.VALIDATION, reason="HTTP 422 Unprocessable Content"),
    # RFC 8470: the request came in TLS early data; resending after the handshake works.
    # A transport matter, so NETWORK, but the upstream is healthy: no breaker count.
    425: _C(category=Category.NETWORK, retryable=True, reason="HTTP 425 Too Early"),
    429: _C(
        category=Category.RATE_LIMIT,
        severity=Severity.MEDIUM,
        retryable=True,
        reason="HTTP 429 Too Many Requests",
    ),
    500: _C(
        category=Category.SERVER,
        severity=Severity.MEDIUM,
        retryable=True,
        counts_as_failure=True,
        reason="HTTP 500 Internal Server Error",
    ),
    501: _C(category=Category.SERVER, severity=Severity.MEDIUM, reason="HTTP 501 Not Implemented"),
    502: _C(
        category=Category.SERVER,
        severity=Severity.MEDIUM,
        retryable=True,
        counts_as_failure=True,
        reason="HTTP 502 Bad Gateway",
    ),
    503: _C(
        category=Category.SERVER,
        severity=Severity.MEDIUM,
        retryable=True,
        counts_as_failure=True,
        reason="HTTP 503 Service Unavailable",
    ),
    504: _C(
        category=Category.TIMEOUT,
        severity=Severity.MEDIUM,
        retryable=True,
        counts_as_failure=True,
        reason="HTTP 504 Gateway Timeout",
    ),
    529: _C(
        category=Category.SERVER,
        severity=Severity.MEDIUM,
        retryable=True,
        counts_as_failure=True,
        reason="HTTP 529 Overloaded",
    ),
}


def classify_status(status: int) -> Classification:
    """The table's classification of ``status``, without looking at headers."""
    known = _TABLE.get(status)
    if known is not None:
        return known
    if status < 400:
        return SUCCESS
    if status >= 500:
        return _C(
            category=Category.SERVER,
            severity=Severity.MEDIUM,
            retryable=True,
            counts_as_failure=True,
            reason=f"HTTP {status}",
        )
    return _C(category=Category.CLIENT, reason=f"HTTP {status}")


@hookimpl(trylast=True)
def seawall_classify(outcome: Outcome) -> Classification | None:
    """Classify an attempt that got a response, by status and wait headers."""
    status = outcome.status
    if status is None or outcome.exception is not None:
        return None
    if status < 400:
        return SUCCESS
    result = classify_status(status)
    headers = outcome.headers
    if not headers:
        return result
    wait = server_wait(headers)
    verdict = should_retry_header(headers)
    if wait is None and verdict is None:
        return result
    if wait is not None:
        result = attrs.evolve(result, retry_after=wait)
    if verdict is not None and verdict != result.retryable:
        reason = f"{result.reason} (x-should-retry: {str(verdict).lower()})"
        result = attrs.evolve(result, retryable=verdict, reason=reason)
    return result
