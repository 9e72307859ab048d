"""What an attempt means: its classification (plugins through ``Hooks``), its verdict
to the breaker and the cooldown, and the backoff before the next one.

``Verdicts`` is the part of ``Loop`` (``seawall._path.loop``) that the sync
loop and the guard share through it; ``classify`` is the facade's
``Seawall.classify``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import attrs

from seawall import backoff
from seawall._path.observer import Observer
from seawall._path.rules import is_delay, next_delay
from seawall._path.spec import Attempt, CallSpec
from seawall.breaker import Permit
from seawall.llm import rate_info
from seawall.outcome import SUCCESS, Category, Classification, Outcome, Severity
from seawall.plugins.hooks import Hooks

__all__ = ["Verdicts", "classify", "outcome_of"]


def classify(hooks: Hooks, outcome: Outcome) -> tuple[Classification, str | None]:
    """What ``outcome`` means, and which plugin said so (``None``: the fallback).

    A plugin's answer that is not a ``Classification``, or one whose fields
    have the wrong types (``category="server"``, ``retry_after=nan``), is a
    fault of that plugin: the built-in answer is used, as when it raises.
    """
    answer, plugin = hooks.first("seawall_classify", outcome=outcome)
    if answer is not None and plugin is not None:
        wrong = _wrong(answer, outcome)
        if wrong is not None:
            if inspect.iscoroutine(answer):
                answer.close()  # else "coroutine ... was never awaited" when it is dropped
            hooks.fault(plugin, "seawall_classify", TypeError(f"seawall_classify {wrong}"))
            answer = None
    if answer is None:
        answer, plugin = hooks.fallback(outcome), None
    if not answer.is_success and outcome.context.get("critical"):
        # Any failure of a critical operation needs a human (docs/concepts/classification.md).
        answer = attrs.evolve(answer, severity=max(answer.severity, Severity.HIGH), escalate=True)
    return answer, plugin


def _wrong(c: object, outcome: Outcome) -> str | None:
    """What is wrong with a classifier's answer, or ``None`` when it can be used.

    The request path reads every field (``c.category.value``, comparisons of
    ``retry_after``): a field of the wrong type would raise into the caller.
    A success for an attempt that raised would hand the caller ``None`` for
    a value its function never returned (the exception swallowed).
    """
    if not isinstance(c, Classification):
        return f"returned {_shown(c)}, not a Classification"
    if c.category is Category.SUCCESS and outcome.exception is not None:
        return (
            f"called an attempt that raised {type(outcome.exception).__name__} a success; "
            "an exception is a failure (retryable or not): the built-in classification was used"
        )
    fields = (
        ("category", isinstance(c.category, Category), "a seawall.Category"),
        ("severity", isinstance(c.severity, Severity), "a seawall.Severity"),
        ("retryable", isinstance(c.retryable, bool), "a bool"),
        ("counts_as_failure", isinstance(c.counts_as_failure, bool), "a bool"),
        ("escalate", isinstance(c.escalate, bool), "a bool"),
        (
            "retry_after",
            c.retry_after is None or is_delay(c.retry_after) or c.retry_after == math.inf,
            "None or seconds >= 0",
        ),
        (
            "max_retries",
            c.max_retries is None
            or (
                isinstance(c.max_retries, int)
                and not isinstance(c.max_retries, bool)
                and c.max_retries >= 0
            ),
            "None or a whole number >= 0",
        ),
        ("reason", isinstance(c.reason, str), "a str"),
    )
    for name, ok, wanted in fields:
        if not ok:
            shown = _shown(getattr(c, name))
            return (
                f"returned a Classification whose {name}={shown} is not {wanted}; "
                "fix the plugin (the built-in classification was used)"
            )
    return None


def _shown(value: object) -> str:
    """``repr(value)``, cut to 80 characters; never raises (a plugin's object)."""
    try:
        text = repr(value)
    except Exception:
        return f"<a {type(value).__name__}>"
    return text if len(text) <= 80 else f"{text[:77]}..."


class Verdicts:
    """Classify an attempt, record its verdict, choose the backoff (a part of ``Loop``)."""

    clock: Callable[[], float]
    hooks: Hooks
    observer: Observer

    def _classify(
        self,
        spec: CallSpec,
        number: int,
        result: Attempt | None,
        exc: BaseException | None,
        elapsed: float,
    ) -> tuple[Outcome | None, Classification]:
        """Ask the plugins; on the plain success path skip building an Outcome."""
        if (
            exc is None
            and result is not None
            and (result.status is None or result.status < 400)
            and not self.hooks.custom("seawall_classify")
        ):
            return None, SUCCESS
        outcome = outcome_of(spec, number, result, exc, elapsed)
        return outcome, classify(self.hooks, outcome)[0]

    def _record(
        self,
        spec: CallSpec,
        permit: Permit,
        c: Classification,
        result: Attempt | None,
        sent_at: float | None = None,
    ) -> None:
        """The attempt's verdict to the breaker and the cooldown; escalate if it needs a human."""
        state = spec.state
        breaker = state.breaker
        headers = result.headers if spec.llm and result is not None else None
        info = rate_info(headers) if headers else None
        if state.cooldown.observe(info, success=c.is_success, sent_at=sent_at):
            self.observer.distrusted(spec)  # its rate headers were proved wrong
        if c.is_success:
            breaker.record(permit, failure=False)
            return
        if c.counts_as_failure:
            breaker.record(permit, failure=True)
            state.stats.last_failure = self.clock()
        elif c.category is Category.CALLER:
            breaker.release(permit)  # the caller's own code failed: no news of the upstream
        elif c.category is Category.RATE_LIMIT:
            breaker.release(permit)  # the upstream is alive but busy: a cooldown, not a trip
            wait = c.retry_after  # None: the 429 did not say; the cooldown still learns
            state.cooldown.start(
                None if wait is None else min(wait, spec.policy.retry.retry_after_max), sent_at
            )
        else:
            breaker.record(permit, failure=False)  # a 4xx: the upstream answered
        self.observer.escalate(spec, c)

    def delay(
        self, spec: CallSpec, number: int, outcome: Outcome, c: Classification
    ) -> tuple[float, str]:
        """Seconds to wait before the next attempt, and what decided it."""
        retry = spec.policy.retry
        answer, plugin = self.hooks.first(
            "seawall_backoff", attempt=number, outcome=outcome, classification=c, policy=retry
        )
        if not is_delay(answer):
            if inspect.iscoroutine(answer):
                answer.close()  # a plain def that returned a coroutine: never left to warn
            if plugin is not None:
                bad = ValueError(f"seawall_backoff returned {answer!r}, not seconds >= 0")
                self.hooks.fault(plugin, "seawall_backoff", bad)
            answer = backoff.delay(number, retry)
        return next_delay(answer, number, c, retry, spec.context)


def outcome_of(
    spec: CallSpec, number: int, result: Attempt | None, exc: BaseException | None, elapsed: float
) -> Outcome:
    return Outcome(
        key=spec.key,
        method=spec.method,
        url=spec.redacted_url,
        attempt=number,
        status=result.status if result is not None else None,
        headers=result.headers if result is not None else None,
        body=result.body if result is not None else None,
        exception=exc,
        elapsed=elapsed,
        context=spec.context,
        content_type=result.content_type if result is not None else "",
        llm=spec.llm,
    )
