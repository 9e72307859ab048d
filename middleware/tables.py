"""The classification tables: HTTP statuses, exception kinds, message patterns.

Pure values (no aiohttp): the built-in plugins (``seawall.plugins.builtin``)
are thin hook wrappers over them, and the CLI's ``classify`` reads them too.
The exception *types* of aiohttp are matched in
``seawall.plugins.builtin.exceptions``; the standard library's are here.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from seawall.outcome import SUCCESS, Category, Classification, Severity

__all__ = [
    "BUILTIN_PATTERNS",
    "CALLER_TYPES",
    "SSL_BROKEN",
    "Pattern",
    "classify_status",
    "first_match",
    "status_of",
    "with_reason",
]

# --- HTTP statuses ------------------------------------------------------------

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


# --- exceptions: what each kind means ---------------------------------------------

TLS = _C(
    category=Category.TLS,
    severity=Severity.HIGH,
    escalate=True,
    reason="TLS certificate error: the upstream's certificate is not trusted",
)
TLS_HANDSHAKE = _C(
    category=Category.TLS,
    severity=Severity.HIGH,
    escalate=True,
    reason="TLS handshake failed: check the URL's scheme and port (https to a plain-HTTP "
    "port fails like this) and the TLS versions both sides allow",
)
INVALID_URL = _C(category=Category.VALIDATION, reason="invalid URL")
MALFORMED_RESPONSE = _C(
    category=Category.SERVER,
    severity=Severity.MEDIUM,
    retryable=True,
    counts_as_failure=True,
    reason="the upstream's answer is not valid HTTP",
)
CALLER = _C(
    category=Category.CALLER,
    reason="an error in the calling code, not the upstream's: fix the code",
)
# The client's own connection pool had no connection free in time (httpx's PoolTimeout):
# too many requests in flight in this process, nothing the upstream did. Not retried
# (another wait in the same full pool) and not counted (a burst must not open the breaker).
POOL_FULL = _C(
    category=Category.CALLER,
    reason="the client's own connection pool had no free connection in time (PoolTimeout): "
    "too many requests in flight here; raise the pool's limits or its pool timeout",
)
TIMEOUT = _C(
    category=Category.TIMEOUT,
    severity=Severity.MEDIUM,
    retryable=True,
    counts_as_failure=True,
    reason="timed out",
)
NETWORK = _C(
    category=Category.NETWORK,
    severity=Severity.MEDIUM,
    retryable=True,
    counts_as_failure=True,
    reason="connection failed",
)
RESOURCE = _C(
    category=Category.RESOURCE_EXHAUSTION,
    severity=Severity.HIGH,
    retryable=True,
    counts_as_failure=True,
    reason="out of a resource",
)
UNKNOWN = _C(
    category=Category.UNKNOWN,
    severity=Severity.MEDIUM,
    retryable=True,
    counts_as_failure=True,
    max_retries=1,
    reason="unknown error",
)

# An inner seawall (a session with our middleware, called inside sw.call) has
# already retried or refused: retrying again would multiply attempts.
INNER_OPEN = _C(
    category=Category.SERVER,
    severity=Severity.MEDIUM,
    reason="an inner seawall's circuit breaker is open",
)
INNER_DEADLINE = _C(
    category=Category.TIMEOUT,
    severity=Severity.MEDIUM,
    reason="an inner seawall ran out of deadline",
)
INNER_GAVE_UP = _C(
    category=Category.SERVER,
    severity=Severity.MEDIUM,
    counts_as_failure=True,
    reason="an inner seawall already retried and gave up",
)

# TLS errors that mean the connection broke, not that the two sides disagree.
SSL_BROKEN = (
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
    ssl.SSLSyscallError,
    ssl.SSLWantReadError,
    ssl.SSLWantWriteError,
)

# Mistakes in the caller's own code. Looked at after every network, timeout and
# TLS type, so an OSError/ConnectionError subclass (aiohttp's included) is NETWORK
# whatever else it inherits. ValueError is not here: an upstream's bad JSON is one.
CALLER_TYPES: tuple[type[BaseException], ...] = (
    AssertionError,
    AttributeError,
    ArithmeticError,  # ZeroDivisionError, OverflowError
    ImportError,  # ModuleNotFoundError
    LookupError,  # KeyError, IndexError
    NameError,  # UnboundLocalError
    NotImplementedError,
    RecursionError,
    StopAsyncIteration,  # an iterator read past its end (next(it) without a default)
    StopIteration,
    TypeError,
)

# --- message patterns ------------------------------------------------------------------


def _compile(regex: str | re.Pattern[str]) -> re.Pattern[str]:
    if isinstance(regex, re.Pattern):
        return regex
    try:
        return re.compile(regex, re.IGNORECASE)
    except re.error as exc:
        msg = f"pattern {regex!r} is not a valid regular expression ({exc}); fix or escape it"
        raise ValueError(msg) from exc


def _types(value: Iterable[type[BaseException]]) -> tuple[type[BaseException], ...]:
    types = tuple(value)
    for item in types:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            msg = f"exception_types: {item!r} is not an exception class"
            raise TypeError(msg)
    return types


@attrs.frozen
class Pattern:
    """A message pattern: when ``regex`` matches an error's text, use ``classification``.

    ``exception_types`` limits it to those types (empty: any exception).
    """

    regex: re.Pattern[str] = attrs.field(converter=_compile)
    classification: Classification = attrs.field(
        validator=attrs.validators.instance_of(Classification)
    )
    exception_types: tuple[type[BaseException], ...] = attrs.field(default=(), converter=_types)

    def matches(self, exc: BaseException, text: str) -> bool:
        if self.exception_types and not isinstance(exc, self.exception_types):
            return False
        return self.regex.search(text) is not None


def _p(regex: str, **kwargs: Any) -> Pattern:
    return Pattern(regex, _C(**kwargs))


#: The built-in message table, tried after the exception's type.
BUILTIN_PATTERNS: tuple[Pattern, ...] = (
    _p(
        r"rate.?limit|quota|throttl|too many requests",
        category=Category.RATE_LIMIT,
        severity=Severity.MEDIUM,
        retryable=True,
        reason="rate limited",
    ),
    _p(
        # A deadline passed, not a mention: "deadline must be positive" or "invalid
        # deadline" is the caller's (it counts against the breaker, and is retried).
        r"timed?.?out|deadline.?(?:exceeded|expired|passed|reached)|(?:exceeded|missed|past)"
        r" (?:the |its |a )?deadline",
        category=Category.TIMEOUT,
        severity=Severity.MEDIUM,
        retryable=True,
        counts_as_failure=True,
        reason="timed out",
    ),
    _p(
        r"connection (refused|reset|aborted|closed)|broken pipe|network is unreachable",
        category=Category.NETWORK,
        severity=Severity.MEDIUM,
        retryable=True,
        counts_as_failure=True,
        reason="connection failed",
    ),
    _p(
        r"forbidden|permission denied|access denied",
        category=Category.AUTHORIZATION,
        severity=Severity.HIGH,
        escalate=True,
        reason="not authorized",
    ),
    _p(
        # "auth" and its words (authn, authenticate, authorised), never "author",
        # "authority" or "authoritative": a certificate authority or a DNS answer is
        # no failed login, and this pattern escalates to a human.
        r"\bauth(?:_?(?:n|enticat\w*|ori[sz](?:ation|ed?|ing)\w*|error|exception|fail\w*))?\b|unauthori[sz]ed"
        r"|invalid.{0,10}(api.?)?key|credential",
        category=Category.AUTHENTICATION,
        severity=Severity.HIGH,
        escalate=True,
        reason="authentication failed",
    ),
    _p(
        r"invalid (input|argument|request|param)|validation|malformed",
        category=Category.VALIDATION,
        reason="invalid input",
    ),
    _p(
        # Running out, not a mention: "resource not found" or "in-memory cache" is no
        # exhaustion (it counts against the breaker: five of them opened it for everyone).
        r"out of memory|memory ?error|cannot allocate|resources?[ _](?:exhausted|limit"
        r"|temporarily unavailable)|(?:insufficient|no|not enough) (?:capacity|resources"
        r"|memory)|(?:at|over) capacity|capacity exceeded|out of space|no space left|disk full",
        category=Category.RESOURCE_EXHAUSTION,
        severity=Severity.HIGH,
        retryable=True,
        counts_as_failure=True,
        reason="out of a resource",
    ),
)


def first_match(
    patterns: Sequence[Pattern], exc: BaseException, text: str
) -> Classification | None:
    for pattern in patterns:
        if pattern.matches(exc, text):
            return pattern.classification
    return None


def status_of(exc: BaseException) -> int | None:
    for name in ("status_code", "status"):
        try:
            value = getattr(exc, name, None)
        except Exception:  # a property of the exception's that raises: no status
            continue
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


def with_reason(classification: Classification, exc: BaseException) -> Classification:
    return attrs.evolve(classification, reason=f"{classification.reason}: {type(exc).__name__}")
