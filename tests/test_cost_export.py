"""Token and cost figures reach Prometheus (scraped over HTTP) and OpenTelemetry.

The fake provider answers every call with 12 input tokens (4 of them cached)
and 5 output tokens; the expected cost is computed with genai-prices directly.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from genai_prices import Usage, calc_price
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import seawall
from seawall.plugins.otel import OTelMetrics, OTelPlugin
from seawall.plugins.prometheus import PrometheusPlugin, aiohttp_app
from seawall.testing import FakeProvider

MODEL = "gpt-4o"
#: What one call of the fake costs, priced independently of seawall.
ONE_CALL = calc_price(
    Usage(input_tokens=12, output_tokens=5, cache_read_tokens=4), MODEL, provider_id="openai"
).total_price
UNKNOWN = "no-such-model-anywhere"


@pytest.fixture
async def fake():
    async with FakeProvider() as provider:
        yield provider


async def _calls(sw: seawall.Seawall, fake: FakeProvider) -> str:
    """Two priced calls of MODEL and one of a model without a price; return the key."""
    async with sw.session() as session:
        for model in (MODEL, MODEL, UNKNOWN):
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(fake.url + "/v1/chat/completions", json=body) as resp:
                assert resp.status == 200
                await resp.read()
    (key,) = sw.costs()["keys"]
    return str(key)


def _llm_seawall(*plugins: object) -> seawall.Seawall:
    return seawall.Seawall(
        routes={"127.0.0.1": seawall.Policy.for_llm()}, plugins=plugins, entrypoints=False
    )


async def test_prometheus_exports_tokens_and_cost_per_key_and_model(fake, aiohttp_server):
    """GET /metrics shows calls, tokens by kind, USD and unpriced calls per key and model."""
    assert ONE_CALL > 0
    registry = CollectorRegistry()
    sw = _llm_seawall(PrometheusPlugin(registry))
    key = await _calls(sw, fake)
    server = await aiohttp_server(aiohttp_app(registry, "/metrics"), host="127.0.0.1")
    async with aiohttp.ClientSession() as plain, plain.get(server.make_url("/metrics")) as resp:
        text = await resp.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def at(name: str, model: str = MODEL, **labels: str) -> float:
        return samples[name, tuple(sorted({"key": key, "model": model, **labels}.items()))]

    assert at("seawall_llm_calls_total") == 2
    assert at("seawall_llm_tokens_total", kind="input") == 24
    assert at("seawall_llm_tokens_total", kind="output") == 10
    assert at("seawall_llm_tokens_total", kind="cache_read") == 8
    assert at("seawall_llm_tokens_total", kind="cache_write") == 0
    assert at("seawall_llm_cost_usd_total") == pytest.approx(float(2 * ONE_CALL))
    assert at("seawall_llm_unpriced_calls_total") == 0
    assert at("seawall_llm_unpriced_calls_total", UNKNOWN) == 1
    assert at("seawall_llm_cost_usd_total", UNKNOWN) == 0
    assert at("seawall_llm_tokens_total", UNKNOWN, kind="output") == 5
    assert "# TYPE seawall_llm_cost_usd_total counter" in text
    await sw.aclose()


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def _point(points: list[Any], **attributes: str) -> float:
    (value,) = [p.value for p in points if dict(p.attributes) == attributes]
    return float(value)


@pytest.mark.parametrize("plugin", [OTelPlugin, OTelMetrics])
async def test_otel_exports_tokens_and_cost_per_key_and_model(fake, plugin):
    """The in-memory reader sees calls, tokens by kind, USD and unpriced calls."""
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    sw = _llm_seawall(plugin(meters))
    key = await _calls(sw, fake)
    points = _points(reader)
    base = {"seawall.key": key, "seawall.llm.model": MODEL}
    assert _point(points["seawall.llm.calls"], **base) == 2
    tokens = points["seawall.llm.tokens"]
    for kind, expected in (("input", 24), ("output", 10), ("cache_read", 8), ("cache_write", 0)):
        assert _point(tokens, **base, **{"seawall.llm.token.kind": kind}) == expected
    assert _point(points["seawall.llm.cost"], **base) == pytest.approx(float(2 * ONE_CALL))
    unknown = {"seawall.key": key, "seawall.llm.model": UNKNOWN}
    assert _point(points["seawall.llm.unpriced_calls"], **unknown) == 1
    assert _point(points["seawall.llm.unpriced_calls"], **base) == 0
    await sw.aclose()
    meters.shutdown()


async def test_each_priced_call_is_a_span_event_with_its_cost(fake):
    """The caller's span gets one ``seawall.cost`` event per call, cost as a float."""
    exporter = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    sw = _llm_seawall(OTelPlugin(meters))
    with tracers.get_tracer("test").start_as_current_span("handler"):
        key = await _calls(sw, fake)
    (span,) = exporter.get_finished_spans()
    costs = [dict(e.attributes or {}) for e in span.events if e.name == "seawall.cost"]
    assert len(costs) == 3
    first, _, unknown = costs
    assert first["seawall.key"] == key
    assert first["seawall.model"] == MODEL
    assert (first["seawall.input_tokens"], first["seawall.output_tokens"]) == (12, 5)
    assert first["seawall.cache_read_tokens"] == 4
    assert isinstance(first["seawall.cost_usd"], float)
    assert Decimal(str(first["seawall.cost_usd"])) == pytest.approx(ONE_CALL)
    assert unknown["seawall.model"] == UNKNOWN
    assert "seawall.cost_usd" not in unknown  # no price: absent, not zero
    await sw.aclose()
    meters.shutdown()
    tracers.shutdown()
