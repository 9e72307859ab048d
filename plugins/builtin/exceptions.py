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

import contextlib
import socket
import ssl
import sys
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from seawall.errors import CircuitOpenError, DeadlineExceededError, SeawallError
from seawall.outcome import Classification, Outcome
from seawall.plugins import hookimpl
from seawall.redact import exception_str
from seawall.retry_after import answer_headers, server_says
from seawall.tables import (
    BUILTIN_PATTERNS,
    CALLER,
    CALLER_TYPES,
    INNER_DEADLINE,
    INNER_GAVE_UP,
    INNER_OPEN,
    INVALID_URL,
    MALFORMED_RESPONSE,
    NETWORK,
    POOL_FULL,
    RESOURCE,
    SSL_BROKEN,
    TIMEOUT,
    TLS,
    TLS_HANDSHAKE,
    UNKNOWN,
    Pattern,
    classify_status,
    first_match,
    status_of,
    with_reason,
)

__all__ = ["ExceptionClassifier", "Pattern", "classify_exception", "plugin"]

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
            *SSL_BROKEN,
        ),
        NETWORK,
    ),
    ((MemoryError,), RESOURCE),
    (CALLER_TYPES, CALLER),
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
    return isinstance(exc, ssl.SSLError) and not isinstance(exc, SSL_BROKEN)


#: httpx and httpx2 (its fork, with the same exceptions in classes of its own).
_HTTPX_PACKAGES = ("httpx", "httpx2")
_HTTPX: dict[int, list[tuple[tuple[type[BaseException], ...], Classification]]] = {}


def _httpx_types(httpx: Any) -> list[tuple[tuple[type[BaseException], ...], Classification]]:
    """The exception types of ``httpx`` (the module, or httpx2) and their meaning.

    Seawall never imports httpx: an httpx exception can exist only once
    something else did, so its module is looked up in ``sys.modules``.
    Timeouts, network and remote protocol errors are retried; a bad URL or
    scheme, a request httpx could not send (``LocalProtocolError``) and too
    many redirects are not; an undecodable answer is the upstream's fault.
    """
    found = _HTTPX.get(id(httpx))
    if found is None:
        found = _HTTPX[id(httpx)] = [
            ((httpx.PoolTimeout,), POOL_FULL),  # local: before the timeouts it is one of
            ((httpx.TimeoutException,), TIMEOUT),
            ((httpx.InvalidURL, httpx.UnsupportedProtocol), INVALID_URL),
            ((httpx.LocalProtocolError, httpx.TooManyRedirects), CALLER),
            ((httpx.DecodingError,), MALFORMED_RESPONSE),
            ((httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError), NETWORK),
        ]
    return found


def _httpx_tls(exc: BaseException) -> Classification | None:
    """httpx's ``ConnectError`` keeps the TLS failure as its cause (or context)."""
    inner = exc.__cause__ or exc.__context__
    if inner is None or not isinstance(inner, ssl.SSLError):
        return None
    if isinstance(inner, ssl.SSLCertVerificationError):
        return with_reason(TLS, exc)
    return None if isinstance(inner, SSL_BROKEN) else with_reason(TLS_HANDSHAKE, exc)


def _by_httpx(exc: BaseException) -> Classification | None:
    for name in _HTTPX_PACKAGES:
        httpx: Any = sys.modules.get(name)
        if httpx is not None and isinstance(exc, httpx.HTTPError | httpx.InvalidURL):
            break
    else:
        return None
    if isinstance(exc, httpx.HTTPStatusError):
        return classify_status(exc.response.status_code)
    if isinstance(exc, httpx.ConnectError) and (tls := _httpx_tls(exc)) is not None:
        return tls
    for types, classification in _httpx_types(httpx):
        if isinstance(exc, types):
            return with_reason(classification, exc)
    return None


def _by_type(exc: BaseException) -> Classification | None:
    if isinstance(exc, aiohttp.ClientResponseError) and exc.status:
        if isinstance(exc.__cause__, HttpProcessingError):
            # aiohttp's parser gave up on the answer (a bad status line): the
            # upstream's fault, though aiohttp reports it as status 400.
            return with_reason(MALFORMED_RESPONSE, exc)
        return classify_status(exc.status)
    if _tls_handshake(exc):
        return with_reason(TLS_HANDSHAKE, exc)
    if type(exc) is RuntimeError and isinstance(exc.__cause__, StopIteration | StopAsyncIteration):
        return with_reason(CALLER, exc)  # PEP 479: a coroutine's StopIteration, as Python raises it
    for types, classification in _TYPES:
        if isinstance(exc, types):
            return with_reason(classification, exc)
    return _by_httpx(exc)


def classify_exception(
    exc: BaseException,
    match: Callable[[BaseException], Classification | None] | None = None,
) -> Classification:
    """The built-in answer for ``exc``: type, message table, status attribute.

    ``match`` looks ``exc`` up in the message table (a cached lookup); by
    default the table is searched afresh.
    """
    if match is None:
        found = _by_type(exc) or first_match(BUILTIN_PATTERNS, exc, exception_str(exc)[:_MAX_TEXT])
    else:
        found = _by_type(exc) or match(exc)
    if found is not None:
        return found
    status = status_of(exc)
    if status is not None:
        return classify_status(status)
    return with_reason(UNKNOWN, exc)


class ExceptionClassifier:
    """Classifies exceptions; one instance per ``Seawall`` (it holds the cache and counts)."""

    def __init__(self) -> None:
        self._cache: OrderedDict[tuple[type[BaseException], str], Classification | None] = (
            OrderedDict()
        )
        self.stats: Counter[str] = Counter()

    def snapshot(self) -> dict[str, Any]:
        """Counts: classifications, cache hits and misses, per category, and the cache size.

        ``cache_hit_rate`` is hits among lookups (``None`` before any);
        ``builtin_patterns`` the number of message patterns of the built-in table.
        """
        stats = self.stats
        lookups = stats["cache_hits"] + stats["cache_misses"]
        return {
            "classifications": 0,
            "cache_hits": 0,
            "cache_misses": 0,
            **stats,
            "cache_hit_rate": stats["cache_hits"] / lookups if lookups else None,
            "cache_size": len(self._cache),
            "cache_limit": CACHE_SIZE,
            "builtin_patterns": len(BUILTIN_PATTERNS),
        }

    def reset(self) -> None:
        """Zero the counts (``sw.reset_metrics()``); the cache keeps its entries."""
        self.stats.clear()

    @hookimpl(trylast=True)
    def seawall_classify(self, outcome: Outcome) -> Classification | None:
        exc = outcome.exception
        if exc is None:
            return None
        result = self.classify(exc)
        if not result.is_success:
            # An HTTP error raised by the function's own client carries its answer: its
            # Retry-After and x-should-retry count as the adapters' responses' do.
            headers = answer_headers(exc)
            if headers:
                with contextlib.suppress(Exception):  # a mapping whose get() raises
                    result = server_says(result, headers)
        self.stats["classifications"] += 1
        self.stats[f"category.{result.category.value}"] += 1
        return result

    def classify(self, exc: BaseException) -> Classification:
        """``classify_exception``, with the message table's results cached."""
        return classify_exception(exc, self._match)

    def _match(self, exc: BaseException) -> Classification | None:
        text = exception_str(exc)[:_MAX_TEXT]
        cache_key = (type(exc), text)
        if cache_key in self._cache:
            self.stats["cache_hits"] += 1
            self._cache.move_to_end(cache_key)
            return self._cache[cache_key]
        self.stats["cache_misses"] += 1
        found = first_match(BUILTIN_PATTERNS, exc, text)
        self._cache[cache_key] = found
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return found


def plugin() -> ExceptionClassifier:
    """A fresh classifier for one plugin manager."""
    return ExceptionClassifier()
