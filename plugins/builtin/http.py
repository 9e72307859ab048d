"""The built-in HTTP status classifier: ``seawall.tables`` plus the wait headers.

2xx/3xx succeed. 408, 425, 429, 500, 502, 503, 504 and 529 are retryable;
409 is retryable once; 401 and 403 escalate; other 4xx are the caller's to
fix. ``Retry-After``/``retry-after-ms`` become ``retry_after`` and
``x-should-retry`` overrides whether to retry.
"""

from __future__ import annotations

import attrs

from seawall.outcome import SUCCESS, Classification, Outcome
from seawall.plugins import hookimpl
from seawall.retry_after import server_wait, should_retry_header
from seawall.tables import classify_status

__all__ = ["classify_status", "seawall_classify"]


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
