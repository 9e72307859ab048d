"""Value types handed to hooks: what an attempt did and what it means.

All of them are frozen attrs classes: a plugin gets a snapshot, never a live
piece of seawall's state.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

__all__ = ["Category", "Classification", "Outcome", "Severity"]


class Category(enum.Enum):
    """What kind of result an attempt had."""

    SUCCESS = "success"
    NETWORK = "network"
    TIMEOUT = "timeout"
    RATE_LIMIT = "rate_limit"
    SERVER = "server"
    AUTHENTICATION = "authentication"
    AUTHORIZATION = "authorization"
    VALIDATION = "validation"
    CLIENT = "client"
    CONFLICT = "conflict"
    QUOTA_EXHAUSTED = "quota_exhausted"
    RESOURCE_EXHAUSTION = "resource_exhaustion"
    TLS = "tls"
    #: The caller's own code failed (a ``KeyError``, a ``TypeError``): never
    #: retried, never counted for or against the upstream.
    CALLER = "caller"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


class Severity(enum.IntEnum):
    """How much a human should care; maps to log levels (LOW is info)."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4


_EMPTY_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


def _headers(value: Mapping[str, str] | None) -> CIMultiDictProxy[str]:
    if value is None:
        return _EMPTY_HEADERS
    if isinstance(value, CIMultiDictProxy):
        return value
    return CIMultiDictProxy(CIMultiDict(value))


def _frozen_context(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return {} if value is None else dict(value)


@attrs.frozen(kw_only=True)
class Outcome:
    """The result of one attempt, as seen by classifiers and backoff strategies.

    ``url`` is already redacted (key-like query values and credentials are
    masked). ``body`` holds an error response's first 64 KiB, or ``None`` when
    it was not read. Exactly one of ``status`` and ``exception`` is set, except
    for an exception raised after a response arrived. ``llm`` is true when the
    call's policy marks it as an LLM API call (``Policy.for_llm()``).
    """

    key: str
    method: str = "CALL"
    url: URL | None = None
    attempt: int = 1
    status: int | None = None
    headers: CIMultiDictProxy[str] = attrs.field(default=None, converter=_headers)
    body: bytes | None = None
    exception: BaseException | None = None
    elapsed: float = 0.0
    context: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_context)
    content_type: str = ""
    llm: bool = False

    @property
    def failed(self) -> bool:
        """True when the attempt raised or answered with a 4xx/5xx status."""
        return self.exception is not None or (self.status is not None and self.status >= 400)


@attrs.frozen(kw_only=True)
class Classification:
    """What an attempt's result means and what seawall should do about it.

    :param category: the kind of result.
    :param severity: how much a human should care.
    :param retryable: whether trying again could succeed.
    :param counts_as_failure: whether the circuit breaker counts it against the upstream.
    :param retry_after: seconds the server asked us to wait, or ``None``.
    :param max_retries: at most this many retries for this kind of failure, or ``None``.
    :param escalate: whether a human must be told (``seawall_escalate``).
    :param reason: one line for logs and errors, e.g. ``"HTTP 503"``.
    """

    category: Category
    severity: Severity = Severity.LOW
    retryable: bool = False
    counts_as_failure: bool = False
    retry_after: float | None = None
    max_retries: int | None = None
    escalate: bool = False
    reason: str = ""
    #: True for ``Category.SUCCESS`` (stored, not a property: read on every request).
    is_success: bool = attrs.field(init=False, eq=False, repr=False)

    @is_success.default
    def _is_success(self) -> bool:
        return self.category is Category.SUCCESS


#: The classification of a successful attempt; shared, since it never varies.
SUCCESS = Classification(category=Category.SUCCESS, reason="success")
