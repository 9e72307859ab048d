"""Prometheus metrics for seawall (extra ``prometheus``), read at scrape time.

::

    from seawall.plugins.prometheus import PrometheusPlugin, aiohttp_app, asgi_app

    sw = seawall.Seawall(plugins=[PrometheusPlugin()])   # the default registry
    app.mount("/metrics", asgi_app())                     # Starlette, or:
    web_app.add_subapp("/metrics", aiohttp_app())         # aiohttp (GET /metrics/)

A custom collector reads each ``Seawall``'s built-in counters when Prometheus
scrapes, so the request path pays nothing for it: no event is built, no
Prometheus object is touched per request. Every series has a ``key`` label:

- ``seawall_requests_total``, ``seawall_attempts_total``,
  ``seawall_retries_total``, ``seawall_successes_total``,
  ``seawall_cut_by_deadline_total`` (calls the caller's own deadline cut
  short: not in ``failures``, never counted by the breaker);
- ``seawall_failures_total{category}``, ``seawall_rejections_total{reason}``;
- ``seawall_breaker_state{state}`` (1 for the current state, 0 for the others),
  ``seawall_breaker_transitions_total{from,to}``;
- ``seawall_retry_budget_balance`` (tokens left);
- ``seawall_request_duration_seconds`` (histogram of whole calls, retries
  included, with seawall's fixed buckets);

plus ``seawall_escalation_total{event}`` and ``seawall_plugin_faults_total{plugin,hook}``.

What LLM calls cost (``sw.costs()``), per ``key`` and ``model``:
``seawall_llm_calls_total``, ``seawall_llm_tokens_total{kind}`` (``input``,
``output``, ``cache_read``, ``cache_write``; input counts the cached ones too),
``seawall_llm_cost_usd_total`` and ``seawall_llm_unpriced_calls_total`` (calls
whose cost is unknown, so not in the cost: a model the price database does not
know, or a stream left before its usage came).
Several ``Seawall`` objects on one registry are summed per key.
``sw.reset_metrics()`` restarts the counters, which Prometheus treats as a
counter reset.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from seawall.breaker import BreakerState
from seawall.metrics import LATENCY_BUCKETS, LatencyHistogram
from seawall.plugins import hookimpl

if TYPE_CHECKING:
    from aiohttp import web

    from seawall.engine import Seawall

__all__ = [
    "TOKEN_KINDS",
    "PrometheusPlugin",
    "SeawallCollector",
    "aiohttp_app",
    "aiohttp_handler",
    "asgi_app",
]

_COUNTERS = (
    ("requests", "Calls started through seawall."),
    ("attempts", "Upstream attempts made."),
    ("retries", "Retries scheduled."),
    ("successes", "Calls that ended in success."),
    (
        "cut_by_deadline",
        "Calls whose last attempt the caller's deadline cut short (not upstream failures).",
    ),
)

_Labels = tuple[str, ...]

#: The token counts of ``seawall.costs.ModelCost``, by their ``kind`` label.
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")


class SeawallCollector(Collector):
    """Reads the counters of one or more ``Seawall`` objects at scrape time.

    Holds them weakly: a ``Seawall`` that is garbage-collected drops out.
    """

    def __init__(self, *seawalls: Seawall) -> None:
        self._seawalls: weakref.WeakSet[Seawall] = weakref.WeakSet(seawalls)

    def add(self, seawall: Seawall) -> None:
        """Export ``seawall``'s metrics too."""
        self._seawalls.add(seawall)

    def describe(self) -> Iterable[Metric]:
        """The metric names, without reading any seawall (for duplicate checks)."""
        return list(self._families(()))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(list(self._seawalls)))

    def _families(self, seawalls: Iterable[Seawall]) -> Iterator[Metric]:
        sums: dict[str, MutableMapping[_Labels, float]] = defaultdict(lambda: defaultdict(float))
        histograms: dict[str, LatencyHistogram] = {}
        for sw in seawalls:
            self._read(sw, sums, histograms)
        for name, doc in _COUNTERS:
            yield _counter(name, doc, ["key"], sums[name])
        yield _counter(
            "failures",
            "Calls that ended in failure, by category.",
            ["key", "category"],
            sums["failures"],
        )
        yield _counter(
            "rejections",
            "Calls or retries refused without an upstream call, by reason.",
            ["key", "reason"],
            sums["rejections"],
        )
        yield _counter(
            "breaker_transitions",
            "Circuit breaker state changes.",
            ["key", "from", "to"],
            sums["transitions"],
        )
        yield _gauge(
            "breaker_state",
            "Circuit breaker state: 1 for the current one.",
            ["key", "state"],
            sums["breaker_state"],
        )
        yield _gauge(
            "retry_budget_balance", "Retry tokens left in the budget.", ["key"], sums["budget"]
        )
        duration = HistogramMetricFamily(
            "seawall_request_duration_seconds",
            "Duration of whole calls through seawall, retries and waits included.",
            labels=["key"],
        )
        for key, hist in sorted(histograms.items()):
            buckets = [(_le(bound), float(n)) for bound, n in hist.cumulative()]
            duration.add_metric([key], buckets, hist.sum)
        yield duration
        yield _counter("llm_calls", "Priced LLM calls.", ["key", "model"], sums["llm_calls"])
        yield _counter(
            "llm_tokens",
            "Tokens of LLM calls, by kind (input includes the cached ones).",
            ["key", "model", "kind"],
            sums["llm_tokens"],
        )
        yield _counter(
            "llm_cost_usd",
            "What LLM calls cost, in US dollars (genai-prices).",
            ["key", "model"],
            sums["llm_cost"],
        )
        yield _counter(
            "llm_unpriced_calls",
            "LLM calls whose cost is unknown (not in the cost): a model without a known "
            "price, or a stream left before its usage came.",
            ["key", "model"],
            sums["llm_unpriced"],
        )
        yield _counter(
            "escalation",
            "Escalation incidents by what happened to them.",
            ["event"],
            sums["escalation"],
        )
        yield _counter(
            "plugin_faults",
            "Plugin calls that raised and were skipped.",
            ["plugin", "hook"],
            sums["faults"],
        )

    @staticmethod
    def _read(
        sw: Seawall,
        sums: dict[str, MutableMapping[_Labels, float]],
        histograms: dict[str, LatencyHistogram],
    ) -> None:
        """Add ``sw``'s counters to ``sums``. Scrapes run in a thread while the loop
        counts: each dict is copied (``list``, one step under the GIL) before the
        loop over it, which a new entry would otherwise break mid-iteration."""
        for key, state in list(sw.registry.view.items()):
            stats = state.stats
            label = (key,)
            sums["requests"][label] += stats.requests
            sums["attempts"][label] += stats.attempts
            sums["retries"][label] += stats.retries
            sums["successes"][label] += stats.successes
            sums["cut_by_deadline"][label] += stats.cut_by_deadline
            for category, n in list(stats.failures.items()):
                sums["failures"][(key, category)] += n
            for reason, n in list(stats.rejections.items()):
                sums["rejections"][(key, reason)] += n
            for move, n in list(stats.transitions.items()):
                old, _, new = move.partition("->")
                sums["transitions"][(key, old, new)] += n
            current = state.breaker.state
            for breaker_state in BreakerState:
                gauge = sums["breaker_state"]
                labels = (key, breaker_state.value)
                gauge[labels] = max(gauge.get(labels, 0.0), float(current is breaker_state))
            sums["budget"][label] += state.budget.balance()
            hist = histograms.setdefault(key, LatencyHistogram())
            hist.merge(stats.latency)
        for key, models in list(sw.cost_tracker.by_key.items()):
            for model, cost in list(models.items()):
                sums["llm_calls"][(key, model)] += cost.calls
                sums["llm_cost"][(key, model)] += float(cost.cost_usd)
                sums["llm_unpriced"][(key, model)] += cost.unpriced_calls
                for kind in TOKEN_KINDS:
                    tokens = getattr(cost, f"{kind}_tokens")
                    sums["llm_tokens"][(key, model, kind)] += tokens
        for event, n in list(sw.escalator.stats.items()):
            sums["escalation"][(event,)] += n
        for (plugin, hook), n in list(sw.hooks.faults.items()):
            sums["faults"][(plugin, hook)] += n


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _counter(
    name: str, doc: str, labels: list[str], values: MutableMapping[_Labels, float]
) -> CounterMetricFamily:
    family = CounterMetricFamily(f"seawall_{name}", doc, labels=labels)
    for label_values, value in sorted(values.items()):
        family.add_metric(list(label_values), value)
    return family


def _gauge(
    name: str, doc: str, labels: list[str], values: MutableMapping[_Labels, float]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"seawall_{name}", doc, labels=labels)
    for label_values, value in sorted(values.items()):
        family.add_metric(list(label_values), value)
    return family


_shared: weakref.WeakKeyDictionary[CollectorRegistry, SeawallCollector] = (
    weakref.WeakKeyDictionary()
)


def collector_for(registry: CollectorRegistry) -> SeawallCollector:
    """The one seawall collector of ``registry``, registered on first use."""
    collector = _shared.get(registry)
    if collector is None:
        collector = _shared[registry] = SeawallCollector()
        registry.register(collector)
    return collector


class PrometheusPlugin:
    """Exports every ``Seawall`` it is given to (``plugins=[...]``) on ``registry``.

    :param registry: where the metrics are registered (default: prometheus_client's
        global ``REGISTRY``, which ``start_http_server`` and ``make_asgi_app`` serve).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        self.collector = collector_for(self.registry)

    @hookimpl
    def seawall_configure(self, seawall: Seawall) -> None:
        self.collector.add(seawall)


def _exposition(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


async def _exposition_off_loop(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """The exposition, made in a worker thread: with thousands of keys it is seconds of
    CPU (~35 lines per key), which on the loop would stall every request of the app."""
    return await asyncio.to_thread(_exposition, registry, accept)


def aiohttp_handler(
    registry: CollectorRegistry | None = None,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp request handler answering with the text exposition of ``registry``."""
    from aiohttp import web

    reg = registry if registry is not None else REGISTRY

    async def metrics(request: web.Request) -> web.Response:
        body, content_type = await _exposition_off_loop(reg, request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    return metrics


def aiohttp_app(registry: CollectorRegistry | None = None, path: str = "/") -> web.Application:
    """An aiohttp application serving the metrics at ``path`` (for ``add_subapp`` or alone)."""
    from aiohttp import web

    app = web.Application()
    app.router.add_get(path, aiohttp_handler(registry))
    return app


_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def asgi_app(
    registry: CollectorRegistry | None = None,
) -> Callable[[_Scope, _Receive, _Send], Awaitable[None]]:
    """A plain ASGI application serving the metrics on GET (and HEAD), at any path.

    Mount it in Starlette with ``Mount("/metrics", app=asgi_app())``, or run it
    alone under any ASGI server. No Starlette import.
    """
    reg = registry if registry is not None else REGISTRY

    async def app(scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed; use GET\n", "text/plain", True)
            return
        accept = ""
        for name, value in scope.get("headers", ()):
            if name.lower() == b"accept":
                accept = value.decode("latin-1")
        body, content_type = await _exposition_off_loop(reg, accept)
        await _respond(send, 200, body, content_type, scope["method"] == "GET")

    return app


async def _respond(send: _Send, status: int, body: bytes, content_type: str, full: bool) -> None:
    headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode("ascii")),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body if full else b""})


async def _lifespan(receive: _Receive, send: _Send) -> None:
    for _ in range(2):  # startup, then shutdown
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


#: Bucket bounds of ``seawall_request_duration_seconds`` (seconds).
BUCKETS = LATENCY_BUCKETS
