"""What an attempt means: its classification (plugins through ``Hooks``), its verdict
to the breaker and the cooldown, and the backoff before the next one.

``Verdicts`` is the part of ``Loop`` (``seawall._path.loop``) that the sync
loop and the guard share through it; ``classify`` is the facade's
``Seawall.classify``.
"""

from __future__ import annotations

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
    """What ``outcome`` means, and which plugin said so (``None``: the fallback)."""
    answer, plugin = hooks.first("seawall_classify", outcome=outcome)
    if not isinstance(answer, Classification):
        if answer is not None and plugin is not None:
            bad = TypeError(f"seawall_classify returned {answer!r}, not a Classification")
            hooks.fault(plugin, "seawall_classify", bad)
        answer, plugin = hooks.fallback(outcome), None
    if not answer.is_success and outcome.context.get("critical"):
        # Any failure of a critical operation needs a human (docs/concepts/classification.md).
        answer = attrs.evolve(answer, severity=max(answer.severity, Severity.HIGH), escalate=True)
    return answer, plugin


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
