"""The built-in HTTP status classifier: ``seawall.tables`` plus the wait headers.

2xx/3xx succeed. 408, 425, 429, 500, 502, 503, 504 and 529 are retryable;
409 is retryable once; 401 and 403 escalate; other 4xx are the caller's to
fix. ``Retry-After``/``retry-after-ms`` become ``retry_after`` and
``x-should-retry`` overrides whether to retry.
"""

from __future__ import annotations

from seawall.outcome import SUCCESS, Classification, Outcome
from seawall.plugins import hookimpl
from seawall.retry_after import server_says
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
    return server_says(result, headers)
