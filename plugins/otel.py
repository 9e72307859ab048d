"""OpenTelemetry metrics and span events for seawall (extra ``otel``, API only).

::

    from seawall.plugins.otel import OTelPlugin

    sw = seawall.Seawall(plugins=[OTelPlugin()])   # the global meter and tracer providers

Metrics (every one with a ``seawall.key`` attribute), read from seawall's
built-in counters when the SDK collects, except the histogram:

- observable counters ``seawall.requests``, ``seawall.attempts``,
  ``seawall.retries``, ``seawall.successes``, ``seawall.cut_by_deadline``,
  ``seawall.failures`` (``seawall.category``), ``seawall.rejections`` (``seawall.reason``),
  ``seawall.breaker.transitions`` (``seawall.breaker.from``, ``seawall.breaker.to``);
- observable gauge ``seawall.breaker.state`` (``seawall.breaker.state``; 1 for
  the current state, 0 for the others);
- histogram ``seawall.request.duration`` (seconds, whole calls, retries
  included), recorded when each call finishes;
- what LLM calls cost (``sw.costs()``), with ``seawall.key`` and
  ``seawall.llm.model``: observable counters ``seawall.llm.calls``,
  ``seawall.llm.tokens`` (``seawall.llm.token.kind``: ``input``, ``output``,
  ``cache_read``, ``cache_write``), ``seawall.llm.cost`` (US dollars) and
  ``seawall.llm.unpriced_calls`` (calls whose cost is unknown: a model without a
  price, or a stream left before its usage came).

Span events on the caller's current span (when it is recording):
``seawall.retry`` for each scheduled retry (attempt, delay, reason, category)
``seawall.rejected`` for each call or retry refused without an upstream
call (reason ``breaker``, ``budget``, ``deadline``, ``cooldown``...), and
``seawall.cost`` for each priced LLM call (model, token counts, ``cost_usd``
as a float, absent for a model without a price).

The histogram and the span events come from ``seawall_event``, so with this
plugin the engine builds event objects; ``OTelMetrics()`` gives the
observable instruments alone, at no request-path cost. One plugin object may
serve several ``Seawall`` objects.
"""

from __future__ import annotations

import importlib.metadata
import weakref
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from seawall.breaker import BreakerState
from seawall.metrics import LATENCY_BUCKETS, KeyStats
from seawall.plugins import hookimpl

if TYPE_CHECKING:
    from seawall.costs import ModelCost
    from seawall.engine import Seawall
    from seawall.events import Event
    from seawall.state import KeyState

__all__ = ["TOKEN_KINDS", "OTelMetrics", "OTelPlugin"]

_SCOPE = "seawall"


def _version() -> str:
    """seawall's version, as ``seawall.__version__`` has it (without importing the root)."""
    try:
        return importlib.metadata.version("seawall")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


#: The token counts of ``seawall.costs.ModelCost``, by ``seawall.llm.token.kind``.
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")


class _Metrics:
    """The OTel plugin's metrics half: observable instruments over seawall's counters."""

    def __init__(self, meter_provider: MeterProvider | None) -> None:
        provider = meter_provider or metrics.get_meter_provider()
        meter = provider.get_meter(_SCOPE, _version())
        self.seawalls: weakref.WeakSet[Seawall] = weakref.WeakSet()
        for name, unit, doc in (
            ("requests", "{request}", "Calls started through seawall."),
            ("attempts", "{attempt}", "Upstream attempts made."),
            ("retries", "{retry}", "Retries scheduled."),
            ("successes", "{request}", "Calls that ended in success."),
            (
                "cut_by_deadline",
                "{request}",
                "Calls whose last attempt the caller's deadline cut short (not upstream failures).",
            ),
        ):
            meter.create_observable_counter(
                f"seawall.{name}", [self._plain(name)], unit=unit, description=doc
            )
        meter.create_observable_counter(
            "seawall.failures",
            [self._by("failures", "seawall.category")],
            unit="{request}",
            description="Calls that ended in failure, by category.",
        )
        meter.create_observable_counter(
            "seawall.rejections",
            [self._by("rejections", "seawall.reason")],
            unit="{request}",
            description="Calls or retries refused without an upstream call, by reason.",
        )
        meter.create_observable_counter(
            "seawall.breaker.transitions",
            [self._transitions],
            unit="{transition}",
            description="Circuit breaker state changes.",
        )
        meter.create_observable_gauge(
            "seawall.breaker.state",
            [self._breaker_state],
            description="Circuit breaker state: 1 for the current one, 0 for the others.",
        )
        meter.create_observable_counter(
            "seawall.llm.calls",
            [self._costs(lambda cost: [({}, cost.calls)])],
            unit="{call}",
            description="Priced LLM calls.",
        )
        meter.create_observable_counter(
            "seawall.llm.tokens",
            [
                self._costs(
                    lambda cost: [
                        ({"seawall.llm.token.kind": kind}, getattr(cost, f"{kind}_tokens"))
                        for kind in TOKEN_KINDS
                    ]
                )
            ],
            unit="{token}",
            description="Tokens of LLM calls, by kind (input includes the cached ones).",
        )
        meter.create_observable_counter(
            "seawall.llm.cost",
            [self._costs(lambda cost: [({}, float(cost.cost_usd))])],
            unit="USD",
            description="What LLM calls cost, in US dollars (genai-prices).",
        )
        meter.create_observable_counter(
            "seawall.llm.unpriced_calls",
            [self._costs(lambda cost: [({}, cost.unpriced_calls)])],
            unit="{call}",
            description=(
                "LLM calls whose cost is unknown (not in the cost): a model without a known "
                "price, or a stream left before its usage came."
            ),
        )
        self.duration = meter.create_histogram(
            "seawall.request.duration",
            unit="s",
            description="Duration of whole calls through seawall, retries and waits included.",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )

    def _states(self) -> Iterator[tuple[str, KeyState]]:
        for sw in list(self.seawalls):
            yield from list(sw.registry.view.items())

    def _plain(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            totals: dict[str, int] = {}
            for key, state in self._states():
                totals[key] = totals.get(key, 0) + getattr(state.stats, name)
            return [Observation(n, {"seawall.key": key}) for key, n in totals.items()]

        return observe

    def _by(self, name: str, label: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            totals: dict[tuple[str, str], int] = {}
            for key, state in self._states():
                counter: dict[str, int] = getattr(state.stats, name)
                for value, n in list(counter.items()):  # the SDK reads in its own thread
                    totals[key, value] = totals.get((key, value), 0) + n
            return [Observation(n, {"seawall.key": k, label: v}) for (k, v), n in totals.items()]

        return observe

    def _costs(
        self, values: Callable[[ModelCost], list[tuple[dict[str, str], float]]]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        """A callback observing ``values(cost)`` per key and model, summed over seawalls."""

        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            totals: dict[tuple[tuple[str, str], ...], float] = {}
            for sw in list(self.seawalls):
                for key, models in list(sw.cost_tracker.by_key.items()):
                    for model, cost in list(models.items()):
                        base = {"seawall.key": key, "seawall.llm.model": model}
                        for extra, value in values(cost):
                            labels = tuple(sorted({**base, **extra}.items()))
                            totals[labels] = totals.get(labels, 0) + value
            return [Observation(value, dict(labels)) for labels, value in totals.items()]

        return observe

    def _transitions(self, _options: CallbackOptions) -> Iterable[Observation]:
        totals: dict[tuple[str, str, str], int] = {}
        for key, state in self._states():
            stats: KeyStats = state.stats
            for move, n in list(stats.transitions.items()):
                old, _, new = move.partition("->")
                totals[key, old, new] = totals.get((key, old, new), 0) + n
        return [
            Observation(n, {"seawall.key": k, "seawall.breaker.from": o, "seawall.breaker.to": t})
            for (k, o, t), n in totals.items()
        ]

    def _breaker_state(self, _options: CallbackOptions) -> Iterable[Observation]:
        current: dict[tuple[str, str], int] = {}
        for key, state in self._states():
            for s in BreakerState:
                labels = (key, s.value)
                current[labels] = max(current.get(labels, 0), int(state.breaker.state is s))
        return [
            Observation(n, {"seawall.key": k, "seawall.breaker.state": s})
            for (k, s), n in current.items()
        ]


class OTelMetrics:
    """The observable instruments alone: no ``seawall_event``, no request-path cost.

    :param meter_provider: default: the global one (``metrics.get_meter_provider()``).
    """

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        self._metrics = _Metrics(meter_provider)

    @hookimpl
    def seawall_configure(self, seawall: Seawall) -> None:
        self._metrics.seawalls.add(seawall)


class OTelPlugin(OTelMetrics):
    """Instruments, the duration histogram and span events; pass it in ``plugins=[...]``.

    Span events go to the caller's current span, whatever tracer provider made it.
    """

    @hookimpl
    def seawall_event(self, event: Event) -> None:
        kind = event.kind
        if kind == "call":
            elapsed: float = getattr(event, "elapsed", 0.0)
            self._metrics.duration.record(elapsed, {"seawall.key": event.key})
            return
        if kind not in ("retry", "rejected", "cost"):
            return
        span = trace.get_current_span()
        if not span.is_recording():
            return
        attributes: dict[str, Any] = {}
        for name, value in event.as_dict().items():
            if name in ("timestamp", "kind") or value is None or value == "":
                continue
            # OTel attributes take str, bool, int and float: a Decimal cost becomes a float.
            attributes[f"seawall.{name}"] = float(value) if isinstance(value, Decimal) else value
        span.add_event(f"seawall.{kind}", attributes)
