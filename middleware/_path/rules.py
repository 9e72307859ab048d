"""The pure rules of the attempt loop: when to stop, and how long to wait.

No I/O, no plugins, no clock reads: each function looks at what it is given.
``why_stop`` returns a ``StopReason`` (an enum, so the give-up step can pick
the error by kind); ``StopReason.describe`` is the text that goes into
events, notes and error messages.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any

from seawall._checks import show_seconds
from seawall._path.spec import CallSpec
from seawall.outcome import Category, Classification, Outcome
from seawall.policy import IDEMPOTENT_METHODS, RetryPolicy
from seawall.retry_after import should_retry_header

__all__ = ["StopReason", "deadline_at", "is_delay", "next_delay", "sent_request", "why_stop"]


class StopReason(enum.Enum):
    """Why the loop made no further attempt."""

    NOT_RETRYABLE = "not retryable"
    NOT_ON = "not in on="
    ON_RAISED = "on= raised"
    NOT_IN_RETRY_ON = "not in retry_on"
    RETRIED_ENOUGH = "retried enough"
    METHOD_EXCLUDED = "method excluded"
    NOT_IDEMPOTENT = "not idempotent"
    NOT_REPLAYABLE = "not replayable"
    ATTEMPTS = "attempts"
    SERVER_WAIT = "server wait too long"
    BREAKER = "breaker"
    DEADLINE = "deadline"
    BUDGET = "budget"
    ANSWERED = "answered"

    def describe(
        self,
        spec: CallSpec,
        c: Classification,
        status: int | None = None,
        exc: BaseException | None = None,
    ) -> str:
        """The reason as people read it (events' ``stopped_because``, notes, errors).

        ``exc``: the last attempt's exception, which may tell the method of a
        plain function's request (``sent_request``).
        """
        retry = spec.policy.retry
        category = c.category.value
        method = what = spec.method
        if not spec.http and exc is not None and (sent := sent_request(exc)) is not None:
            method = sent[0]
            what = f"the function's {method} request"
        text = {
            StopReason.NOT_IN_RETRY_ON: f"{category} is not in retry_on",
            StopReason.NOT_ON: "the exception is not one that on= retries",
            StopReason.ON_RAISED: "on= raised; see its error",
            StopReason.RETRIED_ENOUGH: f"{category} is retried at most {c.max_retries} time(s)",
            StopReason.METHOD_EXCLUDED: (
                f"the policy's retry_methods excludes {what} "
                f"(add {method} to RetryPolicy.retry_methods to retry it)"
            ),
            # Re-sending a POST could charge a card twice: only with an Idempotency-Key.
            StopReason.NOT_IDEMPOTENT: (
                f"{what} is not idempotent (send an Idempotency-Key header, or add "
                f"{method} to RetryPolicy.retry_methods if the upstream takes repeats)"
            ),
            StopReason.NOT_REPLAYABLE: (
                "the request body cannot be sent again (a consumed stream)"
                if spec.http
                else "an argument cannot be given again (a consumed generator or file)"
            ),
            StopReason.SERVER_WAIT: (
                f"the server asked to wait {show_seconds(c.retry_after or 0.0)}, above "
                f"retry_after_max={retry.retry_after_max:g}"
            ),
            StopReason.ANSWERED: f"the response had a status (HTTP {status}); it is never re-sent",
        }.get(self)
        return self.value if text is None else text


def why_stop(
    spec: CallSpec,
    number: int,
    max_attempts: int,
    outcome: Outcome,
    c: Classification,
    retried: Mapping[Category, int],
    *,
    breaker: bool = True,
) -> StopReason | None:
    """Why not to retry after attempt ``number``, or ``None`` to retry.

    Each rule is a safety reason. ``max_attempts`` is the policy's, capped in
    test mode. ``breaker=False`` leaves out the last rule (the key's breaker
    is open), for a caller that asks it under the key's lock: the others
    need no lock, and ``on=``'s predicate must not run under it.
    """
    retry = spec.policy.retry
    retry_if = spec.retry_if
    if retry_if is not None and outcome.exception is not None:
        # The caller said which exceptions to retry (on=): that replaces the
        # classification's say on retrying; the safety rules below still hold.
        if not retry_if(outcome.exception):
            return StopReason.NOT_ON
    elif not c.retryable:
        return StopReason.NOT_RETRYABLE
    elif c.category not in retry.retry_on and not (
        outcome.headers and should_retry_header(outcome.headers) is True
    ):
        return StopReason.NOT_IN_RETRY_ON
    elif c.max_retries is not None and retried.get(c.category, 0) >= c.max_retries:
        return StopReason.RETRIED_ENOUGH
    if not spec.idempotent:
        if spec.method in IDEMPOTENT_METHODS:  # safe to re-send, but the policy says no
            return StopReason.METHOD_EXCLUDED
        return StopReason.NOT_IDEMPOTENT
    if not spec.http and outcome.exception is not None:
        # A plain function's HTTP request, as its exception tells it: the same
        # rule as the adapters' (an openai/httpx/aiohttp/requests error names it).
        sent = sent_request(outcome.exception)
        if sent is not None and not sent[1] and sent[0] not in retry.retry_methods:
            if sent[0] in IDEMPOTENT_METHODS:
                return StopReason.METHOD_EXCLUDED
            return StopReason.NOT_IDEMPOTENT
    if spec.replayable is not None and not spec.replayable():
        return StopReason.NOT_REPLAYABLE
    if number >= max_attempts:
        return StopReason.ATTEMPTS
    if c.retry_after is not None and c.retry_after > retry.retry_after_max:
        return StopReason.SERVER_WAIT
    if breaker and spec.state.breaker.is_open():
        return StopReason.BREAKER
    return None


_IDEMPOTENCY_KEY = "idempotency-key"
_MOST_HEADERS = 256  # a request's headers looked through for the key, at most


def sent_request(exc: BaseException) -> tuple[str, bool] | None:
    """The HTTP request ``exc`` says it came from: its method (upper case) and
    whether it had an ``Idempotency-Key`` header; ``None`` when it says none.

    Read by duck typing, importing nothing: aiohttp's ``ClientResponseError``
    (``request_info``), httpx/httpx2 errors and the OpenAI/Anthropic SDKs'
    (``request``; httpx's property raises when it has none) and requests'
    (``request``, which may be ``None``). Never raises: an attribute that
    raises or has the wrong type says nothing.
    """
    try:
        request = getattr(exc, "request_info", None) or getattr(exc, "request", None)
        method = getattr(request, "method", None)
        if not isinstance(method, str) or not method:
            return None
        headers = getattr(request, "headers", None)
        keyed = False
        if headers is not None:
            for count, name in enumerate(headers):
                if count >= _MOST_HEADERS:
                    break
                if isinstance(name, str) and name.lower() == _IDEMPOTENCY_KEY:
                    keyed = True
                    break
    except Exception:  # a property of the exception's that raises: it names no request
        return None
    return method.upper(), keyed


def is_delay(value: object) -> bool:
    """Whether a backoff plugin's answer is usable: finite seconds >= 0."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def next_delay(
    proposed: float,
    number: int,
    c: Classification,
    retry: RetryPolicy,
    context: Mapping[str, Any],
) -> tuple[float, str]:
    """Seconds to wait before the next attempt, and what decided it.

    ``proposed`` is the backoff's answer. It is capped at ``max_delay``,
    doubled once the caller's earlier failures and this call's add up to
    more than two, and raised to the server's ``Retry-After`` when that is longer.
    """
    delay = min(float(proposed), retry.max_delay)
    why = "backoff"
    failures = context.get("previous_failures", 0)
    failures = (failures if isinstance(failures, int) else 0) + number
    if failures > 2:
        delay = min(delay * 2.0, retry.max_delay)
    if c.retry_after is not None and c.retry_after > delay:
        delay, why = c.retry_after, "retry-after"
    return delay, why


def deadline_at(
    own: float | None, inbound: float | None, now: float, monotonic: float
) -> float | None:
    """The absolute deadline on the loop's clock (read as ``now``).

    ``own`` is the policy's deadline in seconds; ``inbound`` the inbound
    request's, an instant on ``time.monotonic()`` (read as ``monotonic``).
    """
    at = None if own is None else now + own
    if inbound is not None:
        converted = now + (inbound - monotonic)
        at = converted if at is None else min(at, converted)
    return at
