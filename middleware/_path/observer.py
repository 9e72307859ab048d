"""One typed observer of the request path: events, counters, logs and escalation.

Events are built only when some plugin implements ``seawall_event``
(``observed``); counters are always kept, in the key's ``KeyStats``.

Nothing it tells runs under a key's lock: counters are kept at once (under
the lock, where the request path calls it), while what it tells (events to
``seawall_event`` plugins, the log lines, breaker transitions) waits in the
thread's own list while the thread holds the key's lock, in the order it
came, and goes out when the request path calls ``flush`` after releasing the
lock (docs/architecture.md, "Plugins are called outside the key's lock").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from seawall._path.spec import Attempt, CallSpec
from seawall.breaker import BreakerState, Transition
from seawall.cooldown import HINT_TTL
from seawall.errors import AttemptRecord
from seawall.escalation import Escalator
from seawall.events import (
    AttemptFinished,
    BreakerTransition,
    BudgetExhausted,
    CallFinished,
    Rejected,
    RetryScheduled,
)
from seawall.logs import attempts_log, breaker_log, cooldown_log, level_for
from seawall.outcome import Category, Classification, Severity
from seawall.plugins.hooks import Hooks
from seawall.redact import redact_text
from seawall.state import KeyState

__all__ = ["Observer"]

#: "closed->open" and the like, made once: a string per key and move would cost each key
#: ~60 B per counter entry (DESIGN: a key's state <= 2 KiB).
_MOVES = {(old, new): f"{old.value}->{new.value}" for old in BreakerState for new in BreakerState}


class _Later(threading.local):
    """What one thread has to tell once it releases the key's lock (``None``: nothing)."""

    box: list[tuple[Callable[[Any], object], Any]] | None = None


class Observer:
    """Reports what the loop did: to the key's counters, the logs, events and escalation."""

    def __init__(self, hooks: Hooks, escalator: Escalator, states: Mapping[str, KeyState]) -> None:
        self.hooks = hooks
        self.escalator = escalator
        self.states = states
        #: Whether anyone listens to ``seawall_event`` (else no event is built).
        #: An attribute, not a property: every call reads it; kept in step with
        #: the plugins (the manager's listeners run after ``Hooks`` forgot its caches).
        self.observed = hooks.has("seawall_event")
        hooks.pm.listeners.append(self._plugins_changed)
        self._later = _Later()

    def _plugins_changed(self) -> None:
        self.observed = self.hooks.has("seawall_event")

    # --- telling after the lock ------------------------------------------------

    def _tell(self, state: KeyState | None, fn: Callable[[Any], object], arg: Any) -> None:
        """``fn(arg)`` now, or once this thread releases ``state``'s lock (``flush``)."""
        if state is not None and state.lock._is_owned():  # type: ignore[attr-defined]
            later = self._later
            box = later.box
            if box is None:
                later.box = [(fn, arg)]
            else:
                box.append((fn, arg))
        else:
            fn(arg)

    def flush(self) -> None:
        """Tell what waited for this thread to release a key's lock, in the order it came.

        The request path calls it after each locked section that may have
        had something to tell. Plugins told here may call seawall again: a
        nested call keeps its own list.
        """
        later = self._later
        box = later.box
        if box is not None:
            later.box = None
            for fn, arg in box:
                fn(arg)

    def _event(self, event: object) -> None:
        self.hooks.each("seawall_event", event=event)

    def emit(self, cls: type[Any], spec: CallSpec, **fields: Any) -> None:
        event = cls(key=spec.key, timestamp=time.time(), **fields)
        self._tell(spec.state, self._event, event)

    def distrusted(self, spec: CallSpec) -> None:
        """The key's rate-limit headers were proved wrong: warn, after the lock."""
        self._tell(spec.state, _warn_distrusted, spec.key)

    def transition(self, transition: Transition) -> None:
        """A breaker changed state: count at once; log and tell observers after the lock."""
        state = self.states.get(transition.key)
        if state is not None:
            state.stats.count("transitions", _MOVES[transition.old, transition.new])
        self._tell(state, self._told_transition, transition)

    def _told_transition(self, transition: Transition) -> None:
        level = logging.WARNING if transition.new is BreakerState.OPEN else logging.INFO
        if breaker_log.isEnabledFor(level):
            breaker_log.log(
                level,
                "circuit breaker for %s: %s -> %s (failure rate %.0f%%, %d failed calls in a row)",
                transition.key,
                transition.old.value,
                transition.new.value,
                transition.failure_rate * 100,
                transition.consecutive_failures,
                extra={"seawall_key": transition.key, "seawall_breaker": transition.new.value},
            )
        if self.observed:
            self.hooks.each(
                "seawall_event",
                event=BreakerTransition(
                    key=transition.key,
                    timestamp=time.time(),
                    old=transition.old.value,
                    new=transition.new.value,
                    failure_rate=transition.failure_rate,
                    consecutive_failures=transition.consecutive_failures,
                ),
            )

    def reject(self, spec: CallSpec, reason: str, retry_after: float | None) -> None:
        spec.state.stats.count("rejections", reason)
        if self.observed:
            self.emit(
                Rejected,
                spec,
                reason=reason,
                retry_after=retry_after,
                method=spec.method,
                url=str(spec.redacted_url or ""),
            )
            if reason == "budget":
                self.emit(BudgetExhausted, spec, balance=spec.state.budget.balance())

    def attempt(
        self,
        spec: CallSpec,
        number: int,
        result: Attempt | None,
        exc: BaseException | None,
        c: Classification,
        elapsed: float,
    ) -> None:
        self.emit(
            AttemptFinished,
            spec,
            method=spec.method,
            url=str(spec.redacted_url or ""),
            attempt=number,
            status=result.status if result is not None else None,
            exception=type(exc).__name__ if exc is not None else None,
            category=c.category.value,
            elapsed=elapsed,
        )

    def waiting(
        self, spec: CallSpec, number: int, delay: float, reason: str, category: Category
    ) -> None:
        """A wait before the next attempt (a retry's backoff, or a cooldown)."""
        spec.state.stats.waited += delay
        if self.observed:
            self.emit(
                RetryScheduled,
                spec,
                method=spec.method,
                url=str(spec.redacted_url or ""),
                attempt=number,
                delay=delay,
                reason=reason,
                category=category.value,
            )

    def finish(
        self,
        spec: CallSpec,
        elapsed: float,
        c: Classification,
        result: Attempt | None,
        attempts: int,
        stopped: str | None,
        observed: bool,
    ) -> None:
        """A call ended after ``elapsed`` seconds: metrics, and the event if observed."""
        spec.state.stats.observe_call(elapsed, c.is_success)
        if observed:
            self.emit(
                CallFinished,
                spec,
                method=spec.method,
                url=str(spec.redacted_url or ""),
                attempts=attempts,
                outcome=c.category.value,
                status=result.status if result is not None else None,
                elapsed=elapsed,
                stopped_because=stopped,
            )

    def failed(
        self, spec: CallSpec, record: AttemptRecord, c: Classification, *, cut: bool = False
    ) -> None:
        """Log a failed attempt on ``seawall.attempts`` at its severity's level, if enabled.

        An attempt ``cut`` by the caller's own deadline is not the upstream's failure:
        DEBUG, whatever its severity (a client sending ``X-Request-Timeout: 0.03`` would
        otherwise fill the log with WARNINGs about a healthy upstream).
        """
        level = logging.DEBUG if cut else level_for(c.severity)
        if attempts_log.isEnabledFor(level):
            args = (
                level,
                "%s: %s",
                spec.request_line(),
                record,
                {
                    "seawall_key": spec.key,
                    "seawall_attempt": record.number,
                    "seawall_category": c.category.value,
                    "seawall_severity": c.severity.name,
                },
            )
            self._tell(spec.state, _log_attempt, args)

    def escalate(self, spec: CallSpec, c: Classification) -> None:
        """Hand an attempt that needs a human to the escalator, when it does."""
        if c.escalate or c.severity >= Severity.CRITICAL:
            self.escalator.report(
                severity=c.severity,
                category=c.category,
                key=spec.key,
                request=spec.request_line(),
                reason=redact_text(c.reason),
                context={k: v for k, v in spec.context.items() if isinstance(v, str | int | bool)},
            )


def _log_attempt(args: tuple[int, str, str, AttemptRecord, dict[str, Any]]) -> None:
    level, msg, line, record, extra = args
    attempts_log.log(level, msg, line, record, extra=extra)


def _warn_distrusted(key: str) -> None:
    cooldown_log.warning(
        "more requests to %s succeeded than its rate-limit headers allowed (sent after "
        "them, answered before the bucket they stated could refill): %s is paced from "
        "its 429s, not its headers, until %.0fs after the last answer that proves them "
        "wrong. If the key spans several limits (models), key the route by model: "
        'Policy(key="model")',
        key,
        key,
        HINT_TTL,
        extra={"seawall_key": key},
    )
