"""Giving up: counters for the last attempt, then the response or the right error.

Through ``sw.call`` the original exception is raised with the attempt history
in its notes. Through an HTTP adapter a seawall error (the adapter's twin)
chained to it, for the reasons that are seawall's own (attempts, budget,
deadline, breaker) and for originals the adapter says must not escape
(``CallSpec.wrap``); any other original is raised with notes.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from seawall._path.observer import Observer
from seawall._path.rules import StopReason
from seawall._path.spec import Attempt, CallSpec
from seawall.breaker import CLOSED_PERMIT, Permit
from seawall.errors import (
    AttemptRecord,
    CircuitOpenError,
    DeadlineExceededError,
    RetriesExhaustedError,
    RetryBudgetExhaustedError,
    SeawallError,
)
from seawall.outcome import Classification
from seawall.redact import describe_exception

__all__ = ["GiveUp", "deadline_error", "describe", "make_error", "turn_past_deadline"]

#: The error for each reason that is seawall's own decision.
_KINDS: dict[StopReason, type[SeawallError]] = {
    StopReason.ATTEMPTS: RetriesExhaustedError,
    StopReason.BUDGET: RetryBudgetExhaustedError,
    StopReason.DEADLINE: DeadlineExceededError,
    StopReason.BREAKER: CircuitOpenError,
}

_ADVICE: dict[type[SeawallError], str] = {
    RetryBudgetExhaustedError: "too many retries on this key lately, so "
    "this failure was not retried; the upstream is probably struggling",
    DeadlineExceededError: "no time was left for another attempt; give "
    "the call more time or make it cheaper",
}


class GiveUp:
    """The last step of a call that did not succeed."""

    def __init__(self, clock: Callable[[], float], observer: Observer) -> None:
        self.clock = clock
        self.observer = observer

    def stop(
        self,
        spec: CallSpec,
        reason: StopReason,
        started: float,
        c: Classification,
        result: Attempt | None,
        exc: Exception | None,
        history: list[AttemptRecord],
        *,
        cut: bool = False,
        status: int | None = None,
        permit: Permit = CLOSED_PERMIT,
    ) -> Any:
        """Give up: return the last response, or raise for an exception.

        ``cut``: the caller's deadline ended the last attempt; counted apart
        (``cut_by_deadline``), never against the upstream. ``status``: the
        response's, when its body broke off (``StopReason.ANSWERED``).
        ``permit``: the last attempt's (a probe's turn that ran out: stale news).
        """
        state = spec.state
        if cut:
            state.stats.cut_by_deadline += 1
        else:
            state.stats.count("failures", c.category.value)
            if c.counts_as_failure:
                state.breaker.call_failed(permit)
        if status is None and result is not None:
            status = result.status
        text = reason.describe(spec, c, status, exc)
        observer = self.observer
        observer.finish(
            spec, self.clock() - started, c, result, len(history), text, observer.observed
        )
        if exc is None:
            return result.value if result is not None else None
        raise final_error(spec, reason, text, exc, history)


def final_error(
    spec: CallSpec, reason: StopReason, text: str, exc: Exception, history: list[AttemptRecord]
) -> BaseException:
    """What to raise when the last attempt raised ``exc``."""
    if reason is StopReason.DEADLINE and isinstance(exc, TimeoutError):
        msg = (
            f"{spec.request_line()}: the deadline passed during attempt {len(history)}; "
            "give the call more time or make the upstream answer sooner"
        )
        return make_error(spec, DeadlineExceededError, exc, history, message=msg)
    if not spec.http:
        _annotate(exc, history, f"gave up on {spec.key}: {text}")
        return exc
    kind = _KINDS.get(reason)
    if kind is None:
        if spec.wrap is None or not spec.wrap(exc):
            _annotate(exc, history, f"not retried: {text}")
            return exc
        kind = RetriesExhaustedError
    if kind is CircuitOpenError:
        return make_error(spec, kind, exc, history, retry_after=spec.state.breaker.retry_after())
    return make_error(spec, kind, exc, history, reason=text)


class _Note(str):
    """A note seawall added (told apart from everyone else's by its type; pickled as a str)."""

    __slots__ = ()

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        return str, (str(self),)


def _annotate(exc: BaseException, history: list[AttemptRecord], last: str) -> None:
    """Add the attempt history and ``last`` (why seawall stopped) to ``exc``'s notes.

    The same object can fail many calls (a shared future's exception, a
    module-level one, a nested protected call): the notes seawall added to it
    before are dropped first, so it carries one set, the last give-up's. Notes
    that are not a list (someone set them so) are left as they are.
    """
    notes = getattr(exc, "__notes__", None)
    if notes is not None:
        if not isinstance(notes, list):
            return
        notes[:] = [note for note in notes if type(note) is not _Note]
    for record in history:
        exc.add_note(_Note(f"seawall: {record}"))
    exc.add_note(_Note(f"seawall: {last}"))


def make_error(
    spec: CallSpec,
    kind: type[SeawallError],
    cause: BaseException | None,
    history: list[AttemptRecord],
    *,
    message: str | None = None,
    retry_after: float | None = None,
    reason: str | None = None,
) -> SeawallError:
    """A seawall error for ``spec``; the adapter's twin when it has one."""
    cls = spec.error_class(kind)
    if issubclass(cls, CircuitOpenError):
        error: SeawallError = cls(spec.key, retry_after or 0.0, attempts=history, message=message)
    else:
        if message is None:
            message = _message(spec, kind, cause, history, reason)
        error = cls(message, key=spec.key, attempts=history)
    if cause is not None:
        error.__cause__ = cause
    return error


def deadline_error(
    observer: Observer,
    spec: CallSpec,
    history: list[AttemptRecord],
    happened: str,
    what: str = "call",
    advice: str = "make it cheaper",
) -> SeawallError:
    """``DeadlineExceededError``: ``happened``, the attempts made, what to do. Counted as
    a ``deadline`` rejection (under the key's lock, reentrant: callers may hold it),
    told at the caller's next ``observer.flush()``."""
    with spec.state.lock:
        observer.reject(spec, "deadline", None)
    last = f" after {len(history)} attempt(s)" if history else "; nothing was sent"
    msg = (
        f"{happened}{last}. Give the {what} more time (TimeoutPolicy.deadline or the "
        f"inbound deadline) or {advice}"
    )
    return make_error(spec, DeadlineExceededError, None, history, message=msg)


def turn_past_deadline(
    observer: Observer, spec: CallSpec, history: list[AttemptRecord], what: str = "call"
) -> SeawallError:
    """The error of a held call (or block: ``what``) whose paced turn after the recovery
    came past its deadline (``hold.TurnPastDeadline``), told at once."""
    subject = spec.request_line() if what == "call" else f"sw.breaker({spec.key!r})"
    happened = (
        f"{subject}: the breaker recovered while the {what} was held, but its paced turn "
        "came after its deadline"
    )
    advice = "hold it less (BreakerPolicy.hold)"
    error = deadline_error(observer, spec, history, happened, what, advice)
    observer.flush()
    return error


def _message(
    spec: CallSpec,
    kind: type[SeawallError],
    cause: BaseException | None,
    history: list[AttemptRecord],
    reason: str | None,
) -> str:
    last = describe_exception(cause, 2000) if cause is not None else "no attempt"
    if kind is RetriesExhaustedError:
        if reason not in (None, StopReason.ATTEMPTS.value):
            advice = "seawall did not retry it; see the reason and the attempt history"
        elif _unresolved(cause):
            advice = (
                "the host name did not resolve; check it for typos and check the "
                "resolver (DNS server, /etc/hosts) - more attempts will not help"
            )
        else:
            advice = "the upstream kept failing; check its health or raise RetryPolicy.max_attempts"
    else:
        advice = _ADVICE.get(kind, "see the attempt history in the notes")
    return (
        f"{spec.request_line()}: gave up after {len(history)} attempt(s) "
        f"({reason or kind.__name__}); last: {last}; {advice}"
    )


def _unresolved(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is a failure to resolve a host name."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, socket.gaierror):
            return True
        if isinstance(getattr(exc, "os_error", None), socket.gaierror):
            return True  # aiohttp's ClientConnectorError keeps the OSError aside
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


#: Longest text of an exception in the attempt history (notes, log lines, errors).
DESCRIBED = 300


def describe(result: Attempt | None, exc: BaseException | None) -> str:
    """An attempt's result in the history: ``HTTP 503``, or the exception's redacted repr
    cut to ``DESCRIBED`` characters (a huge message is cut before it is redacted)."""
    if exc is not None:
        return describe_exception(exc, DESCRIBED)
    if result is not None and result.status is not None:
        return f"HTTP {result.status}"
    return "returned"
