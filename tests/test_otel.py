"""The OpenTelemetry plugin: metric values from the SDK's in-memory reader, span events."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import seawall
from seawall.plugins.otel import OTelMetrics, OTelPlugin
from seawall.policy import BreakerPolicy, Policy, RetryPolicy

from .conftest import status


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out[metric.name] = list(metric.data.data_points)
    return out


def _value(points: list[Any], **attributes: str) -> Any:
    for point in points:
        if all(point.attributes.get(f"seawall.{k}") == v for k, v in attributes.items()):
            return point
    raise AssertionError(f"no point with {attributes} in {points}")


@pytest.fixture
def otel() -> tuple[InMemoryMetricReader, MeterProvider, InMemorySpanExporter, TracerProvider]:
    """An SDK meter provider with an in-memory reader and a tracer with an in-memory exporter."""
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    exporter = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    yield reader, meters, exporter, tracers
    meters.shutdown()
    tracers.shutdown()


async def test_metrics_and_span_events_after_a_scenario(upstream, make_session, otel):
    """Counters, breaker state and the duration histogram read right; retries and
    breaker rejections are span events on the caller's span."""
    reader, meters, exporter, tracers = otel
    up, server = upstream
    up.then(status(503), status(200), status(500), status(500))
    sw = seawall.Seawall(
        Policy(
            retry=RetryPolicy(max_attempts=2),
            # probe_share=0: the call after the opening is refused at once on a slow host.
            breaker=BreakerPolicy(failure_threshold=1, probe_share=0),
        ),
        plugins=[OTelPlugin(meters)],
        entrypoints=False,
    )
    tracer = tracers.get_tracer("test")
    with tracer.start_as_current_span("handler"):
        async with make_session(sw) as session:
            for expected in (200, 500):
                async with session.get(server.make_url("/?token=SECRET-O")) as resp:
                    assert resp.status == expected
            with pytest.raises(seawall.CircuitOpenError):
                await session.get(server.make_url("/"))
    (key,) = sw.health()["keys"]
    points = _points(reader)
    assert _value(points["seawall.requests"], key=key).value == 3
    assert _value(points["seawall.attempts"], key=key).value == 4
    assert _value(points["seawall.retries"], key=key).value == 2
    assert _value(points["seawall.successes"], key=key).value == 1
    assert _value(points["seawall.failures"], key=key, category="server").value == 1
    assert _value(points["seawall.rejections"], key=key, reason="breaker").value == 1
    moves = points["seawall.breaker.transitions"]
    assert _value(moves, key=key, **{"breaker.from": "closed", "breaker.to": "open"}).value == 1
    states = points["seawall.breaker.state"]
    assert _value(states, key=key, **{"breaker.state": "open"}).value == 1
    assert _value(states, key=key, **{"breaker.state": "closed"}).value == 0
    duration = _value(points["seawall.request.duration"], key=key)
    assert duration.count == 2
    assert duration.sum >= 0
    (span,) = exporter.get_finished_spans()
    names = [e.name for e in span.events]
    assert names == ["seawall.retry", "seawall.retry", "seawall.rejected"]
    retry = dict(span.events[0].attributes)
    assert retry["seawall.reason"] == "backoff"
    assert retry["seawall.key"] == key
    assert "SECRET-O" not in str(retry)
    assert "token=***" in retry["seawall.url"]
    assert dict(span.events[2].attributes)["seawall.reason"] == "breaker"


async def test_metrics_only_plugin_builds_no_events(otel):
    """OTelMetrics implements no seawall_event, and still reports counters."""
    reader, meters, _exporter, _tracers = otel
    sw = seawall.Seawall(plugins=[OTelMetrics(meters)], entrypoints=False)
    assert not sw.hooks.has("seawall_event")

    async def ok() -> int:
        return 1

    await sw.call(ok, key="svc")
    assert _value(_points(reader)["seawall.requests"], key="svc").value == 1


async def test_no_span_events_without_a_recording_span(otel):
    """Outside any span, retries are still counted and nothing fails."""
    reader, meters, exporter, _tracers = otel
    sw = seawall.Seawall(plugins=[OTelPlugin(meters)], entrypoints=False)
    calls = []

    async def flaky() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionResetError("reset")
        return 1

    assert await sw.call(flaky, key="svc") == 1
    assert _value(_points(reader)["seawall.retries"], key="svc").value == 1
    assert exporter.get_finished_spans() == ()
