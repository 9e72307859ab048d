"""The built-in classifier for attempts that raised.

The user's patterns are asked before this (``seawall.builtin.patterns``), and
on LLM routes the providers' error codes too (``seawall.builtin.llm``). Here,
in order: the exception's type (aiohttp's and the standard library's network,
timeout and TLS errors, an unparsable response, then errors in the caller's
own code), the built-in message table, a ``status_code``/``status``
attribute (SDK errors). Anything else is UNKNOWN and retried at most once.
``CancelledError`` never gets here: the engine re-raises it untouched. Table
results are cached per (type, message), bounded, and counted.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import aiohttp
import attrs
from aiohttp.http_exceptions import HttpProcessingError

from seawall.errors import CircuitOpenError, DeadlineExceededError, SeawallError
from seawall.outcome import Category, Classification, Outcome, Severity
from seawall.plugins import hookimpl
from seawall.plugins.builtin.http import classify_status

__all__ = ["ExceptionClassifier", "Pattern", "classify_exception", "plugin"]

_C = Classification

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
_SSL_BROKEN = (
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
    TypeError,
)

# Most specific first: isinstance order matters (certificate errors are
# connection errors too, timeouts are OSErrors).
_TYPES: tuple[tuple[tuple[type[BaseException], ...], Classification], ...] = (
    ((CircuitOpenError,), INNER_OPEN),
    ((DeadlineExceededError,), INNER_DEADLINE),
    ((SeawallError,), INNER_GAVE_UP),
    ((aiohttp.ClientConnectorCertificateError, ssl.SSLCertVerificationError), TLS),
    ((aiohttp.InvalidURL,), INVALID_URL),
    ((TimeoutError, aiohttp.ServerTimeoutError), TIMEOUT),
    (
        (
            aiohttp.ClientConnectionError,
            aiohttp.ClientPayloadError,
            ConnectionError,
            socket.gaierror,
            *_SSL_BROKEN,
        ),
        NETWORK,
    ),
    ((MemoryError,), RESOURCE),
    (CALLER_TYPES, CALLER),
)


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
        r"timed?.?out|deadline",
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
        r"\bauth|unauthori[sz]ed|invalid.{0,10}(api.?)?key|credential",
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
        r"out of memory|memory|resource|capacity|out of space|no space left|disk full",
        category=Category.RESOURCE_EXHAUSTION,
        severity=Severity.HIGH,
        retryable=True,
        counts_as_failure=True,
        reason="out of a resource",
    ),
)

#: How many (type, message) results the cache keeps.
CACHE_SIZE = 1024
#: Longest message text matched against patterns.
_MAX_TEXT = 2000


def _tls_handshake(exc: BaseException) -> bool:
    """A TLS handshake the two sides could not agree on (not a broken connection)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        return False  # an untrusted certificate: TLS, with its own reason
    if isinstance(exc, aiohttp.ClientSSLError):
        exc = getattr(exc, "os_error", exc)
    return isinstance(exc, ssl.SSLError) and not isinstance(exc, _SSL_BROKEN)


def _by_type(exc: BaseException) -> Classification | None:
    if isinstance(exc, aiohttp.ClientResponseError) and exc.status:
        if isinstance(exc.__cause__, HttpProcessingError):
            # aiohttp's parser gave up on the answer (a bad status line): the
            # upstream's fault, though aiohttp reports it as status 400.
            return _with_reason(MALFORMED_RESPONSE, exc)
        return classify_status(exc.status)
    if _tls_handshake(exc):
        return _with_reason(TLS_HANDSHAKE, exc)
    for types, classification in _TYPES:
        if isinstance(exc, types):
            return _with_reason(classification, exc)
    return None


def classify_exception(exc: BaseException) -> Classification:
    """The built-in answer for ``exc``, uncached: type, message table, status attribute."""
    found = _by_type(exc) or _first_match(BUILTIN_PATTERNS, exc, str(exc)[:_MAX_TEXT])
    if found is not None:
        return found
    status = _status_of(exc)
    if status is not None:
        return classify_status(status)
    return _with_reason(UNKNOWN, exc)


class ExceptionClassifier:
    """Classifies exceptions; one instance per ``Seawall`` (it holds the cache and counts)."""

    def __init__(self) -> None:
        self._cache: OrderedDict[tuple[type[BaseException], str], Classification | None] = (
            OrderedDict()
        )
        self.stats: Counter[str] = Counter()

    def snapshot(self) -> dict[str, Any]:
        """Counts: classifications, cache hits and misses, per category, and the cache size."""
        return {**self.stats, "cache_size": len(self._cache), "cache_limit": CACHE_SIZE}

    @hookimpl(trylast=True)
    def seawall_classify(self, outcome: Outcome) -> Classification | None:
        exc = outcome.exception
        if exc is None:
            return None
        result = self.classify(exc)
        self.stats["classifications"] += 1
        self.stats[f"category.{result.category.value}"] += 1
        return result

    def classify(self, exc: BaseException) -> Classification:
        """``classify_exception``, with the message table's results cached."""
        found = _by_type(exc) or self._match(exc)
        if found is not None:
            return found
        status = _status_of(exc)
        if status is not None:
            return classify_status(status)
        return _with_reason(UNKNOWN, exc)

    def _match(self, exc: BaseException) -> Classification | None:
        text = str(exc)[:_MAX_TEXT]
        cache_key = (type(exc), text)
        if cache_key in self._cache:
            self.stats["cache_hits"] += 1
            self._cache.move_to_end(cache_key)
            return self._cache[cache_key]
        self.stats["cache_misses"] += 1
        found = _first_match(BUILTIN_PATTERNS, exc, text)
        self._cache[cache_key] = found
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return found


def _first_match(
    patterns: Sequence[Pattern], exc: BaseException, text: str
) -> Classification | None:
    for pattern in patterns:
        if pattern.matches(exc, text):
            return pattern.classification
    return None


def _status_of(exc: BaseException) -> int | None:
    for name in ("status_code", "status"):
        value = getattr(exc, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


def _with_reason(classification: Classification, exc: BaseException) -> Classification:
    return attrs.evolve(classification, reason=f"{classification.reason}: {type(exc).__name__}")


def plugin() -> ExceptionClassifier:
    """A fresh classifier for one plugin manager."""
    return ExceptionClassifier()
