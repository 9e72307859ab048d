"""Reading a server's wait hints: ``Retry-After``, ``retry-after-ms``, ``x-should-retry``.

A malformed value is treated as absent (unlike urllib3, which raises), so a
hostile or broken header can only fall back to computed backoff.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping
from typing import Any

import attrs

from seawall.outcome import Classification

__all__ = [
    "answer_headers",
    "parse_retry_after",
    "server_says",
    "server_wait",
    "should_retry_header",
]

#: Longest header value we look at; anything longer is hostile or broken.
_MAX_LEN = 64


#: A header number: ASCII digits with an optional fraction. ``float()`` alone would
#: also take "1e3", "1_000", "inf" and non-ASCII digits.
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


def _seconds(value: str) -> float | None:
    if not _NUMBER.fullmatch(value):
        return None
    number = float(value)
    if not math.isfinite(number):
        return None
    return number


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date.

    :param now: the current Unix time, for dates (default ``time.time()``).
    :returns: seconds (0 for a date in the past), or ``None`` when malformed.
    """
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_LEN:
        return None
    if value[0].isdigit() or value[0] in "+-.":
        return _seconds(value)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # a year too large for C
        return None
    if parsed is None or parsed.tzinfo is None:
        return None  # RFC 9110 dates are GMT; a date without a zone is malformed
    current = time.time() if now is None else now
    return max(0.0, parsed.timestamp() - current)


def server_wait(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The wait the server asked for, in seconds, or ``None``.

    ``retry-after-ms`` (sent by the OpenAI and Anthropic APIs) wins over
    ``Retry-After`` because it is more precise.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None and len(millis) <= _MAX_LEN:
        ms = _seconds(millis.strip())
        if ms is not None:
            return ms / 1000.0
    return parse_retry_after(headers.get("retry-after"), now=now)


def should_retry_header(headers: Mapping[str, str]) -> bool | None:
    """``x-should-retry: true|false`` as a bool; ``None`` when absent or malformed."""
    value = headers.get("x-should-retry")
    if value is None:
        return None
    value = value.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def server_says(result: Classification, headers: Mapping[str, str]) -> Classification:
    """``result`` (a failure's classification) with what the answer's headers say: the wait
    (``server_wait``) as ``retry_after``, and ``x-should-retry`` over whether to retry."""
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


def answer_headers(exc: BaseException) -> Mapping[str, Any] | None:
    """The headers of the HTTP answer an exception carries, or ``None``.

    By duck typing, importing nothing: ``exc.response.headers`` (httpx's and
    httpx2's ``HTTPStatusError``, requests' ``HTTPError``, the OpenAI and
    Anthropic SDKs' status errors), else ``exc.headers`` (aiohttp's
    ``ClientResponseError``). Never raises: an attribute that raises, or is no
    mapping, says nothing.
    """
    try:
        response = getattr(exc, "response", None)
        headers = None if response is None else getattr(response, "headers", None)
        if headers is None:
            headers = getattr(exc, "headers", None)
    except Exception:  # a property of the exception's that raises: no answer
        return None
    return headers if isinstance(headers, Mapping) else None
