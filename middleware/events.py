"""Event objects for ``seawall_event``: frozen, redacted, built only when observed.

Each has a ``kind``: ``attempt``, ``retry``, ``call``, ``rejected``,
``breaker``, ``budget`` or ``cost``. URLs are redacted strings; exceptions are named by
class only (their messages may hold secrets). The engine builds an event only
when some plugin implements ``seawall_event`` (``Hooks.has``), so nobody
listening costs nothing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

import attrs

__all__ = [
    "AttemptFinished",
    "BreakerTransition",
    "BudgetExhausted",
    "CallCost",
    "CallFinished",
    "Event",
    "Rejected",
    "RetryScheduled",
]


@attrs.frozen(kw_only=True)
class Event:
    """Base of every event: which key it is about, and when (``time.time()``)."""

    kind: ClassVar[str] = "event"
    key: str
    timestamp: float

    def as_dict(self) -> dict[str, object]:
        """Plain data, for logs and exporters."""
        data = attrs.asdict(self, recurse=False)
        data["kind"] = self.kind
        return data


@attrs.frozen(kw_only=True)
class AttemptFinished(Event):
    """One attempt ended: its status or exception class and what it meant."""

    kind: ClassVar[str] = "attempt"
    method: str
    url: str
    attempt: int
    status: int | None
    exception: str | None
    category: str
    elapsed: float


@attrs.frozen(kw_only=True)
class RetryScheduled(Event):
    """seawall will try again after ``delay`` seconds; ``reason`` says why that long."""

    kind: ClassVar[str] = "retry"
    method: str
    url: str
    attempt: int
    delay: float
    reason: str  # "backoff", "retry-after" or "cooldown"
    category: str


@attrs.frozen(kw_only=True)
class CallFinished(Event):
    """A whole call ended (after retries): how many attempts and how it ended."""

    kind: ClassVar[str] = "call"
    method: str
    url: str
    attempts: int
    outcome: str  # a category value; "success" when it worked
    status: int | None
    elapsed: float
    stopped_because: str | None  # why seawall stopped retrying, if it did


@attrs.frozen(kw_only=True)
class Rejected(Event):
    """A call was refused without an upstream call (or a retry was refused)."""

    kind: ClassVar[str] = "rejected"
    reason: str  # "breaker", "budget", "deadline", "cooldown", "load_shedding"
    retry_after: float | None = None  # seconds until the refusal may lift, when known
    method: str = ""
    url: str = ""  # redacted; empty for ``sw.call``


@attrs.frozen(kw_only=True)
class BreakerTransition(Event):
    """The breaker of ``key`` changed state, from ``old`` to ``new``."""

    kind: ClassVar[str] = "breaker"
    old: str  # "closed", "open" or "half_open"
    new: str
    failure_rate: float  # failures among the calls in the breaker's window, 0..1
    consecutive_failures: int


@attrs.frozen(kw_only=True)
class BudgetExhausted(Event):
    """The retry budget of ``key`` refused a retry (a ``Rejected`` with reason
    ``budget`` is emitted just before it)."""

    kind: ClassVar[str] = "budget"
    balance: float  # tokens left; below 1, so no retry could be paid for


@attrs.frozen(kw_only=True)
class CallCost(Event):
    """What one successful LLM call consumed (see ``seawall.costs``).

    ``cost_usd`` is ``None`` when the price database does not know the model.
    ``streamed`` says the usage came from the final chunk of an SSE stream.
    """

    kind: ClassVar[str] = "cost"
    url: str
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: Decimal | None
    streamed: bool = False
