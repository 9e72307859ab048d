"""The built-in LLM classifier: reads OpenAI and Anthropic error bodies and wait headers.

Active for calls whose policy says ``llm=True`` (``Policy.for_llm()``, as a
route or as ``sw.call(policy=...)``; the engine sets ``outcome.llm``) and for
requests to api.openai.com and api.anthropic.com. For an ``Outcome`` built
elsewhere it asks the ``Seawall`` it is configured with
(``seawall_configure``): ``sw.resolve(outcome.url)`` for HTTP calls,
``sw.policy_for_key(outcome.key)`` for ``sw.call``. It is asked before the
exception and HTTP classifiers (``PRIORITY``), so the SDKs' errors raised
through ``sw.call`` (``status_code``, ``body``, ``response``) reach it too.
For anything else it returns ``None`` and the generic classifiers answer.

- OpenAI ``insufficient_quota`` is QUOTA_EXHAUSTED: not retried, severity
  HIGH, escalated (retrying a billing problem only burns time);
  ``rate_limit_exceeded`` is RATE_LIMIT; ``context_length_exceeded`` and other
  ``invalid_request_error`` are VALIDATION; ``server_error`` is retried.
- Anthropic ``overloaded_error`` (529) is retried with a longer backoff
  (``seawall_backoff`` below); ``rate_limit_error`` is RATE_LIMIT;
  ``authentication_error`` and ``permission_error`` escalate;
  ``invalid_request_error`` is not retried.
- The wait: ``retry-after-ms``, ``retry-after``, else the reset of the exhausted
  limit (``x-ratelimit-reset-requests``/``-tokens``, ``anthropic-ratelimit-*-reset``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from seawall.llm import LLM_HOSTS, reset_wait
from seawall.outcome import Category, Classification, Outcome, Severity
from seawall.plugins import hookimpl
from seawall.retry_after import server_wait, should_retry_header

if TYPE_CHECKING:
    from seawall.policy import RetryPolicy

__all__ = ["OVERLOADED_BASE_DELAY", "LLMPlugin", "classify_error", "error_code", "plugin"]

#: Smallest first backoff (seconds) after an "overloaded" answer (Anthropic's 529).
OVERLOADED_BASE_DELAY = 2.0

_C = Classification
_RATE_LIMIT = _C(
    category=Category.RATE_LIMIT, severity=Severity.MEDIUM, retryable=True, reason="rate limited"
)
_SERVER = _C(
    category=Category.SERVER,
    severity=Severity.MEDIUM,
    retryable=True,
    counts_as_failure=True,
    reason="provider server error",
)
_VALIDATION = _C(category=Category.VALIDATION, reason="invalid request")

#: Provider error codes and types (OpenAI ``error.code``/``error.type``,
#: Anthropic ``error.type``) and what they mean.
ERRORS: dict[str, Classification] = {
    "insufficient_quota": _C(
        category=Category.QUOTA_EXHAUSTED,
        severity=Severity.HIGH,
        escalate=True,
        reason="quota exhausted (insufficient_quota): add credit or raise the spending "
        "limit; retrying cannot help",
    ),
    "rate_limit_exceeded": attrs.evolve(_RATE_LIMIT, reason="rate limited (rate_limit_exceeded)"),
    "rate_limit_error": attrs.evolve(_RATE_LIMIT, reason="rate limited (rate_limit_error)"),
    "context_length_exceeded": attrs.evolve(
        _VALIDATION,
        reason="the prompt is longer than the model's context (context_length_exceeded): "
        "shorten it",
    ),
    "invalid_request_error": attrs.evolve(
        _VALIDATION, reason="invalid request (invalid_request_error)"
    ),
    "request_too_large": attrs.evolve(_VALIDATION, reason="request too large"),
    "not_found_error": _C(category=Category.CLIENT, reason="not found (not_found_error)"),
    "model_not_found": _C(category=Category.CLIENT, reason="no such model (model_not_found)"),
    "server_error": attrs.evolve(_SERVER, reason="provider server error (server_error)"),
    "api_error": attrs.evolve(_SERVER, reason="provider server error (api_error)"),
    "overloaded_error": attrs.evolve(_SERVER, reason="provider overloaded (overloaded_error)"),
    "authentication_error": _C(
        category=Category.AUTHENTICATION,
        severity=Severity.HIGH,
        escalate=True,
        reason="authentication failed (authentication_error): check the API key",
    ),
    "invalid_api_key": _C(
        category=Category.AUTHENTICATION,
        severity=Severity.HIGH,
        escalate=True,
        reason="invalid API key (invalid_api_key): check the API key",
    ),
    "permission_error": _C(
        category=Category.AUTHORIZATION,
        severity=Severity.HIGH,
        escalate=True,
        reason="permission denied (permission_error): check the key's permissions",
    ),
}


def error_code(body: Any) -> str | None:
    """The provider's error code or type from a decoded error body, or ``None``.

    Accepts OpenAI's ``{"error": {"code", "type"}}``, Anthropic's ``{"type":
    "error", "error": {"type"}}`` and the inner error object alone (what the
    SDKs keep in ``exc.body``). A known ``code`` wins over the ``type``.
    """
    if not isinstance(body, Mapping):
        return None
    inner = body.get("error")
    error = inner if isinstance(inner, Mapping) else body
    for field in ("code", "type"):
        value = error.get(field)
        if isinstance(value, str) and value in ERRORS:
            return value
    return None


def _decode(body: bytes | None) -> Any:
    if not body or body.lstrip()[:1] != b"{":
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def classify_error(
    status: int | None, body: Any, headers: Mapping[str, str] | None
) -> Classification | None:
    """What an LLM provider's error answer means, or ``None`` to let the HTTP classifier say.

    :param status: the HTTP status.
    :param body: the decoded JSON error body (or ``None``).
    :param headers: the response headers, for the wait.
    """
    code = error_code(body)
    if code is not None:
        result = ERRORS[code]
    elif status == 429:
        result = attrs.evolve(_RATE_LIMIT, reason="HTTP 429 rate limited")
    elif status == 529:
        result = attrs.evolve(_SERVER, reason="HTTP 529 overloaded")
    else:
        return None
    if status is not None:
        result = attrs.evolve(result, reason=f"HTTP {status} {result.reason}")
    if not headers:
        return result
    if result.retryable:
        wait = server_wait(headers)
        if wait is None and result.category is Category.RATE_LIMIT:
            wait = reset_wait(headers)
        if wait is not None:
            result = attrs.evolve(result, retry_after=wait)
        if should_retry_header(headers) is False:
            result = attrs.evolve(
                result, retryable=False, reason=f"{result.reason} (x-should-retry: false)"
            )
    return result


def _overloaded(outcome: Outcome, classification: Classification) -> bool:
    return outcome.status == 529 or "overloaded" in classification.reason


class LLMPlugin:
    """Provider error codes and the "overloaded" backoff, on LLM routes only.

    Whether an attempt is on an LLM route comes with it: ``Outcome.llm``, which
    the engine sets from the route's policy (and ``Seawall.classify`` for an
    outcome built by hand); a well-known provider host counts too. The plugin
    holds no ``Seawall``.
    """

    @staticmethod
    def is_llm(outcome: Outcome) -> bool:
        """Whether ``outcome`` comes from an LLM route (or a call with an LLM policy)."""
        if outcome.llm:
            return True
        url = outcome.url
        return url is not None and url.host is not None and url.host.lower() in LLM_HOSTS

    @hookimpl(trylast=True)
    def seawall_classify(self, outcome: Outcome) -> Classification | None:
        """Classify provider error answers (and SDK exceptions carrying them) on LLM routes."""
        exc = outcome.exception
        if exc is None:
            status = outcome.status
            if status is None or status < 400 or not self.is_llm(outcome):
                return None
            return classify_error(status, _decode(outcome.body), outcome.headers)
        status = getattr(exc, "status_code", None)
        body = getattr(exc, "body", None)
        if not isinstance(status, int) or not isinstance(body, Mapping):
            return None
        if not self.is_llm(outcome):
            return None
        headers = getattr(getattr(exc, "response", None), "headers", None)
        return classify_error(status, body, headers if isinstance(headers, Mapping) else None)

    @hookimpl(trylast=True)
    def seawall_backoff(
        self, attempt: int, outcome: Outcome, classification: Classification, policy: RetryPolicy
    ) -> float | None:
        """A longer, equal-jittered backoff after "overloaded"; otherwise defer."""
        if not _overloaded(outcome, classification) or not self.is_llm(outcome):
            return None
        base = max(OVERLOADED_BASE_DELAY, policy.base_delay)
        try:
            raw = base * policy.multiplier ** (attempt - 1)
        except OverflowError:
            raw = policy.max_delay
        raw = min(policy.max_delay, raw)
        return raw / 2.0 + random.uniform(0.0, raw / 2.0)


def plugin() -> LLMPlugin:
    """The factory the plugin manager calls: a fresh instance per ``Seawall``."""
    return LLMPlugin()
