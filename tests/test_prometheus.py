"""The Prometheus plugin: text exposition scraped over HTTP from running endpoints."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

import seawall
from seawall.plugins.prometheus import PrometheusPlugin, aiohttp_app, asgi_app
from seawall.policy import BreakerPolicy, Policy, RetryPolicy

from .conftest import status


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def _scenario(sw: seawall.Seawall, server, make_session) -> str:
    async with make_session(sw) as session:
        for expected in (200, 500):  # 503 -> 200, then 500, 500: the failed call opens it
            async with session.get(server.make_url("/")) as resp:
                assert resp.status == expected
        with pytest.raises(seawall.CircuitOpenError):
            await session.get(server.make_url("/"))
    (key,) = sw.health()["keys"]
    return key


def _policy() -> Policy:
    # probe_share=0: one probe per recovery_timeout. By default a few quick calls look like
    # traffic, so a slow host could hold the call after the opening for a probe due within
    # a second and send it, where these scenarios expect a CircuitOpenError at once.
    breaker = BreakerPolicy(failure_threshold=1, probe_share=0)
    return Policy(retry=RetryPolicy(max_attempts=2), breaker=breaker)


async def test_scrape_from_a_running_aiohttp_endpoint(upstream, make_session, aiohttp_server):
    """After a scripted scenario, GET /metrics on 127.0.0.1 shows the right values."""
    up, server = upstream
    up.then(status(503), status(200), status(500), status(500))
    registry = CollectorRegistry()
    sw = seawall.Seawall(_policy(), plugins=[PrometheusPlugin(registry)], entrypoints=False)
    key = await _scenario(sw, server, make_session)
    metrics_server = await aiohttp_server(aiohttp_app(registry, "/metrics"), host="127.0.0.1")
    async with (
        aiohttp.ClientSession() as plain,
        plain.get(metrics_server.make_url("/metrics")) as resp,
    ):
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        text = await resp.text()
    s = _samples(text)
    k = (("key", key),)
    assert s["seawall_requests_total", k] == 3
    assert s["seawall_attempts_total", k] == 4
    assert s["seawall_retries_total", k] == 2
    assert s["seawall_successes_total", k] == 1
    assert s["seawall_failures_total", (("category", "server"), *k)] == 1
    assert s["seawall_rejections_total", (*k, ("reason", "breaker"))] == 1
    assert s["seawall_breaker_transitions_total", (("from", "closed"), *k, ("to", "open"))] == 1
    assert s["seawall_breaker_state", (*k, ("state", "open"))] == 1
    assert s["seawall_breaker_state", (*k, ("state", "closed"))] == 0
    assert s["seawall_request_duration_seconds_count", k] == 2
    assert s["seawall_request_duration_seconds_bucket", (*k, ("le", "+Inf"))] == 2
    assert s["seawall_request_duration_seconds_sum", k] >= 0
    assert "# TYPE seawall_request_duration_seconds histogram" in text


async def test_asgi_app_mounted_in_starlette_under_uvicorn(upstream, make_session):
    """The plain ASGI app, mounted in a Starlette app served by uvicorn, serves the metrics."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    up, server = upstream
    up.then(status(503), status(200), status(500), status(500))
    registry = CollectorRegistry()
    sw = seawall.Seawall(_policy(), plugins=[PrometheusPlugin(registry)], entrypoints=False)
    key = await _scenario(sw, server, make_session)
    app = Starlette(routes=[Mount("/metrics", app=asgi_app(registry))])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    config.load()
    uv = uvicorn.Server(config)
    uv.lifespan = config.lifespan_class(config)
    await uv.startup(sockets=[sock])  # returns once uvicorn listens on the socket
    try:
        assert uv.started
        async with aiohttp.ClientSession() as plain:
            async with plain.get(f"http://127.0.0.1:{port}/metrics/") as resp:
                assert resp.status == 200
                text = await resp.text()
            async with plain.post(f"http://127.0.0.1:{port}/metrics/") as resp:
                assert resp.status == 405
    finally:
        await uv.shutdown(sockets=[sock])
        sock.close()
    s = _samples(text)
    assert s["seawall_requests_total", (("key", key),)] == 3
    assert s["seawall_breaker_state", (("key", key), ("state", "open"))] == 1


async def test_two_seawalls_on_one_registry_are_summed():
    """Two Seawall objects sharing a registry export one series per key, summed."""
    registry = CollectorRegistry()
    sws = [
        seawall.Seawall(plugins=[PrometheusPlugin(registry)], entrypoints=False) for _ in range(2)
    ]

    async def ok() -> int:
        return 1

    for sw in sws:
        await sw.call(ok, key="shared")
    assert registry.get_sample_value("seawall_requests_total", {"key": "shared"}) == 2


def test_the_collector_adds_nothing_to_the_request_path():
    """The plugin implements no seawall_event: requests build no events for it."""
    sw = seawall.Seawall(plugins=[PrometheusPlugin(CollectorRegistry())], entrypoints=False)
    assert not sw.hooks.has("seawall_event")


async def test_the_exposition_holds_no_secret_of_the_calls(upstream, make_session, aiohttp_server):
    """Secrets in headers, URL credentials, query, errors and a plugin's fault stay out of a scrape.

    Every path that labels a series runs: retried 503s, a 500 that opens the
    breaker, a 401 that escalates, an ``sw.call`` of a partial holding headers
    whose exception names them, and a plugin raising with a key in its message.
    """
    import functools

    from .test_redaction import NEEDLES, QUERY, SECRETS

    up, server = upstream
    up.then(status(503), status(200), status(401), status(500))
    up.default = status(500)

    class Leaky:
        @seawall.hookimpl
        def seawall_escalate(self, incident: object) -> None:
            raise RuntimeError(f"sink refused; x-api-key={SECRETS['x-api-key']}")

    registry = CollectorRegistry()
    sw = seawall.Seawall(
        _policy(),
        plugins=[PrometheusPlugin(registry), Leaky()],
        entrypoints=False,
    )
    url = server.make_url("/v1/things").with_query(QUERY)
    async with make_session(sw, headers=SECRETS) as session, session.get(url) as resp:
        assert resp.status == 200  # 503, retried: 200
    # Credentials in the URL (aiohttp refuses them next to an Authorization header).
    with_password = url.with_user("svc").with_password("PWSECRET")
    others = {k: v for k, v in SECRETS.items() if k != "Authorization"}
    async with make_session(sw, headers=others) as session:
        for expected in (401, 500):  # 401 escalates; 500, retried: 500, opens the breaker
            async with session.get(with_password) as resp:
                assert resp.status == expected
        with pytest.raises(seawall.CircuitOpenError):
            await session.get(with_password)

    async def sdk_request(headers: dict[str, str]) -> None:
        raise ConnectionResetError(f"reset by {url}; sent {headers}")

    with pytest.raises(ConnectionResetError):
        await sw.call(functools.partial(sdk_request, SECRETS))
    await sw.aclose()

    metrics_server = await aiohttp_server(aiohttp_app(registry, "/metrics"), host="127.0.0.1")
    async with (
        aiohttp.ClientSession() as plain,
        plain.get(metrics_server.make_url("/metrics")) as resp,
    ):
        assert resp.status == 200
        text = await resp.text()
    s = _samples(text)
    origin = f"http://127.0.0.1:{server.port}"
    # The scenario did reach the series that carry labels from the calls.
    assert s["seawall_requests_total", (("key", origin),)] == 4
    assert s["seawall_rejections_total", (("key", origin), ("reason", "breaker"))] == 1
    sdk = f"{test_the_exposition_holds_no_secret_of_the_calls.__qualname__}.<locals>.sdk_request"
    assert s["seawall_failures_total", (("category", "network"), ("key", sdk))] == 1
    assert sum(v for (name, _), v in s.items() if name == "seawall_plugin_faults_total") >= 1
    assert sum(v for (name, _), v in s.items() if name == "seawall_escalation_total") >= 1
    leaks = [needle for needle in [*NEEDLES, "PWSECRET", "svc:"] if needle in text]
    assert not leaks, f"secrets in the exposition: {leaks}"


class _Gate(Collector):
    """A collector that waits, in ``collect``, for the event loop to open its gate."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.opened: list[bool] = []

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        self.entered.set()
        self.opened.append(self.gate.wait(5))  # bounded: False when the loop could not run
        return []


@pytest.mark.parametrize("kind", ["aiohttp", "asgi"])
async def test_a_scrape_never_stalls_the_event_loop(kind: str, aiohttp_server) -> None:
    """The exposition (seconds of CPU for thousands of keys) is made off the loop: the loop
    runs while a scrape is being made, here to open the gate the collector waits for."""
    registry = CollectorRegistry()
    seawall.Seawall(entrypoints=False, plugins=[PrometheusPlugin(registry)])
    gate = _Gate()
    registry.register(gate)
    if kind == "aiohttp":
        server = await aiohttp_server(aiohttp_app(registry, "/metrics"), host="127.0.0.1")
        session = aiohttp.ClientSession()
        scrape = asyncio.ensure_future(session.get(server.make_url("/metrics")))
    else:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
        scrape = asyncio.ensure_future(asgi_app(registry)(scope, receive, send))
    assert await asyncio.to_thread(gate.entered.wait, 5)
    gate.gate.set()  # the loop ran while the collector was collecting
    result = await asyncio.wait_for(scrape, 10)
    if kind == "aiohttp":
        assert result.status == 200
        assert b"seawall_requests_total" in await result.read()
        result.release()
        await session.close()
    else:
        assert sent[0]["status"] == 200
    assert gate.opened == [True]
