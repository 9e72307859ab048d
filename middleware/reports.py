"""Typed answers of ``sw.health()`` and ``sw.costs()``.

Each report is a frozen attrs object whose fields mypy and editors know
(``sw.health().status``, ``sw.costs().by_key["api"].cost_usd``), and also a
read-only ``Mapping``: ``sw.health()["status"]``, ``report["keys"][key]`` (the attribute is
``by_key``: ``keys()`` is the Mapping method),
``dict(report)``, iteration and ``==`` with a plain dict work as they did when
the reports were dicts. ``to_dict()`` gives plain JSON-able values, with each
``Decimal`` as a string (exact, as money should be), so
``json.dumps(report.to_dict())`` works.

A value type only: stdlib and attrs, no import of the engine or the metrics.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterator, Mapping
from decimal import Decimal
from functools import cache
from typing import Any

import attrs

__all__ = [
    "MONEY",
    "AvoidedCalls",
    "CostReport",
    "HealthReport",
    "KeyCosts",
    "KeyHealth",
    "ModelCosts",
    "to_jsonable",
]


#: The decimal context of every price and sum of costs seawall computes: Python's
#: default (28 digits, half-even; InvalidOperation, DivisionByZero and Overflow
#: trapped), whatever the caller's. A call made under a context of fewer digits, or
#: with ``Inexact`` trapped (as money code sets), neither rounds the totals every
#: caller shares nor raises from its successful answer. Use ``decimal.localcontext(MONEY)``.
MONEY = decimal.Context(
    prec=28,
    rounding=decimal.ROUND_HALF_EVEN,
    Emin=-999_999,
    Emax=999_999,
    capitals=1,
    clamp=0,
    flags=[],
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)


@cache
def _layout(cls: type) -> dict[str, str]:
    """Mapping key -> attribute name, in the order a report reads.

    A subclass's own fields come first, then the inherited counters (``status``
    before ``requests``). ``by_key`` is read as ``"keys"``: the attribute
    cannot be named ``keys``, which is ``Mapping.keys()``.
    """
    fields = attrs.fields(cls)
    ordered = [f for f in fields if not f.inherited] + [f for f in fields if f.inherited]
    return {f.metadata.get("key", f.name): f.name for f in ordered}


#: Metadata of the ``by_key`` fields: their mapping key is ``"keys"``.
_KEYS = {"key": "keys"}


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON-able data: reports and mappings become dicts,
    ``Decimal`` a string, tuples lists."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


class _Report(Mapping[str, Any]):
    """Read-only mapping view over an attrs class's fields (``eq`` is Mapping's)."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        name = _layout(type(self)).get(key)
        if name is None:
            raise KeyError(key)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(_layout(type(self)))

    def __len__(self) -> int:
        return len(_layout(type(self)))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dicts all the way down; ``Decimal`` as a string."""
        result: dict[str, Any] = to_jsonable(self)
        return result


# --- health ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True, eq=False)
class Counters(_Report):
    """What happened since the last reset: the totals, and each key's own."""

    requests: int
    attempts: int
    retries: int
    successes: int
    failures: dict[str, int]  # finished calls by failure category
    cut_by_deadline: int
    rejections: dict[str, int]  # by reason: breaker, budget, deadline, cooldown...
    transitions: dict[str, int]  # breaker moves, "closed->open"
    waited: float  # seconds of backoff and cooldown waits
    held_total: int  # calls the breaker held for a probe's verdict (each once)
    success_rate: float | None  # None before any finished call
    average_latency: float | None  # seconds; None before any finished call
    p50_latency: float | None
    p95_latency: float | None
    p99_latency: float | None
    max_latency: float | None


@attrs.frozen(kw_only=True, eq=False)
class KeyHealth(Counters):
    """One key: its breaker, budget and cooldown, and its counters."""

    state: str  # "closed", "open" or "half_open"
    failure_rate: float  # of attempts in the breaker's window
    consecutive_failures: int
    retry_after: float | None  # seconds until an open breaker lets a probe through
    budget_balance: float  # retry budget tokens available
    cooldown: float  # seconds of cooldown left
    last_failure: float | None  # Unix time of the last failure the breaker counted; None: none
    held: int  # calls waiting now for a probe's verdict (see ``held_total``)


@attrs.frozen(kw_only=True, eq=False)
class HealthReport(Counters):
    """``sw.health()``: status by breaker states, totals, and per-key detail."""

    status: str  # "healthy", "degraded" or "unhealthy"
    uptime: float  # seconds
    breakers: dict[str, int]  # keys per breaker state
    by_key: dict[str, KeyHealth] = attrs.field(metadata=_KEYS)
    plugin_faults: dict[str, int]  # "<plugin>.<hook>": count
    escalation: dict[str, int]  # reported, dispatched, folded, overflow, sink_errors
    # "local" (in-process), "shared" (a fleet's Redis) or "local-fallback" (Redis out of reach)
    state: str = "local"


# --- costs ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True, eq=False)
class ModelCosts(_Report):
    """One key's calls to one model."""

    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: Decimal
    #: Calls whose cost is unknown (counted in ``calls``, not in ``cost_usd``): a model
    #: without a known price, or a stream left before its usage came.
    unpriced_calls: int


@attrs.frozen(kw_only=True, eq=False)
class AvoidedCalls(_Report):
    """Calls that never reached the upstream."""

    breaker: int
    cooldown: int


@attrs.frozen(kw_only=True, eq=False)
class KeyCosts(_Report):
    """One key: what its calls cost, and what its failures cost."""

    models: dict[str, ModelCosts]
    cost_usd: Decimal
    calls: int
    failed_attempts: int
    waited_seconds: float
    avoided_calls: AvoidedCalls


@attrs.frozen(kw_only=True, eq=False)
class CostReport(_Report):
    """``sw.costs()``: totals, and per key."""

    cost_usd: Decimal
    calls: int
    input_tokens: int
    output_tokens: int
    by_key: dict[str, KeyCosts] = attrs.field(metadata=_KEYS)

    @classmethod
    def of(cls, keys: dict[str, KeyCosts]) -> CostReport:
        """The totals of ``keys``' costs, with the keys themselves."""
        models = [m for k in keys.values() for m in k.models.values()]
        with decimal.localcontext(MONEY):
            cost_usd = sum((k.cost_usd for k in keys.values()), Decimal(0))
        return cls(
            cost_usd=cost_usd,
            calls=sum(k.calls for k in keys.values()),
            input_tokens=sum(m.input_tokens for m in models),
            output_tokens=sum(m.output_tokens for m in models),
            by_key=keys,
        )
