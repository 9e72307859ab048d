"""Escalation: incidents, dedup, bounded queue, sink timeouts, the logging and webhook sinks."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from typing import Any

import pytest
from aiohttp import web

import seawall
from seawall.escalation import EscalationPolicy, Escalator, Incident
from seawall.outcome import Category, Severity
from seawall.plugins.manager import Hooks, make_manager
from seawall.plugins.webhook import WebhookError, WebhookSink

from .conftest import status


class Sink:
    """A plugin keeping every incident; optionally hanging forever or raising.

    ``async def``: it runs on the loop, so what it did is done by the time the
    escalator moves on. (A plain ``def`` sink runs in a thread that a loaded
    machine may start after ``sink_timeout``: ``test_plugin_safety.py``.)
    """

    def __init__(self, mode: str = "keep") -> None:
        self.mode = mode
        self.incidents: list[Incident] = []

    @seawall.hookimpl
    async def seawall_escalate(self, incident: Incident) -> None:
        self.incidents.append(incident)
        if self.mode == "raise":
            raise RuntimeError("sink broke")
        if self.mode == "hang":
            # Awaits until the test sets ``waiting`` (by default, forever).
            await getattr(self, "waiting", asyncio.Event()).wait()


def _escalator(sink: Sink, now: list[float], **policy: Any) -> Escalator:
    hooks = Hooks(make_manager([sink], entrypoints=False, blocked=["seawall.builtin.logging_sink"]))
    return Escalator(hooks, EscalationPolicy(**policy), clock=lambda: now[0])


def _report(esc: Escalator, key: str = "k", category: Category = Category.AUTHENTICATION) -> None:
    esc.report(
        severity=Severity.HIGH,
        category=category,
        key=key,
        request="GET https://api.example/x?key=***",
        reason="HTTP 401",
        context={"api_key": "SECRET-C", "note": "Bearer SECRET-B", "critical": True},
    )


async def test_incidents_are_deduplicated_per_key_and_category_with_a_count():
    """Repeats within the window fold into the next incident, which carries their count."""
    sink, now = Sink(), [1000.0]
    esc = _escalator(sink, now, window=60.0)
    _report(esc)
    for step in range(4):  # four repeats inside the window
        now[0] = 1001.0 + step
        _report(esc)
    _report(esc, category=Category.TLS)  # another category is its own incident
    await esc.drain()
    assert [(i.category, i.count) for i in sink.incidents] == [
        (Category.AUTHENTICATION, 1),
        (Category.TLS, 1),
    ]
    now[0] = 1100.0  # past the window: the next one tells the folded repeats too
    _report(esc)
    await esc.drain()
    last = sink.incidents[-1]
    assert last.count == 5
    assert last.first_seen == 1001.0
    assert last.last_seen == 1100.0
    assert esc.stats["folded"] == 4
    first = sink.incidents[0]
    assert (first.severity, first.key, first.reason) == (Severity.HIGH, "k", "HTTP 401")
    assert first.request == "GET https://api.example/x?key=***"
    assert first.context == {"api_key": "***", "note": "Bearer ***", "critical": True}


async def test_folded_repeats_are_told_on_close():
    """Repeats still folded when the escalator closes go out as one last incident."""
    sink, now = Sink(), [1000.0]
    esc = _escalator(sink, now)
    for _ in range(3):
        _report(esc)
    await esc.aclose()
    assert [i.count for i in sink.incidents] == [1, 2]


async def test_queue_overflow_is_counted_and_never_blocks():
    """With a full queue, more incidents are dropped and counted; report returns at once."""
    sink, now = Sink("hang"), [1000.0]
    esc = _escalator(sink, now, queue_size=2, sink_timeout=0.05)
    for n in range(10):
        assert _report(esc, key=f"k{n}") is None  # a plain call: nothing to await, no blocking
    assert esc.stats["overflow"] == 8
    await esc.aclose()


async def test_a_raising_sink_is_reported_once_and_others_still_run(caplog):
    """A sink that raises is skipped and logged once; the other sink gets every incident."""
    bad, good = Sink("raise"), Sink()
    hooks = Hooks(make_manager([bad, good], entrypoints=False))
    esc = Escalator(hooks)
    for n in range(3):
        _report(esc, key=f"k{n}")
    with caplog.at_level(logging.ERROR, logger="seawall.plugins"):
        await esc.drain()
    assert len(good.incidents) == 3
    assert sum("raised in seawall_escalate" in r.getMessage() for r in caplog.records) == 1
    assert sum(hooks.faults.values()) == 3


async def test_a_hanging_sink_does_not_hold_requests(upstream, make_session):
    """Requests that escalate finish while the sink is stuck (its timeout is an hour)."""
    up, server = upstream
    up.default = status(401)
    release = asyncio.Event()
    sink = Sink("hang")
    sink.waiting = release  # type: ignore[attr-defined]
    sw = seawall.Seawall(
        plugins=[sink], entrypoints=False, escalation=EscalationPolicy(sink_timeout=3600.0)
    )
    async with make_session(sw) as session, asyncio.timeout(60):  # a hang guard, not a target
        for n in range(20):
            async with session.get(server.make_url(f"/{n}")) as resp:
                assert resp.status == 401
    assert len(sink.incidents) == 1  # the sink is still on the first incident
    release.set()
    await sw.aclose()
    assert len(sink.incidents) == 2  # the first, and the folded repeats on close
    assert sink.incidents[1].count == 19


async def test_a_sink_past_its_timeout_is_abandoned_and_logged_once(caplog):
    """A sink that never returns is given up after sink_timeout; the queue moves on."""
    sink, now = Sink("hang"), [1000.0]
    esc = _escalator(sink, now, sink_timeout=0.01)
    _report(esc, key="a")
    _report(esc, key="b")
    with caplog.at_level(logging.ERROR, logger="seawall.plugins"):
        async with asyncio.timeout(60):  # a hang guard
            await esc.drain()
    assert [i.key for i in sink.incidents] == ["a", "b"]
    timeouts = [r for r in caplog.records if "sink_timeout" in r.getMessage()]
    assert len(timeouts) == 1
    await esc.aclose()


async def test_logging_sink_logs_at_the_severity_level_with_structured_extra(caplog):
    """The built-in sink logs a HIGH incident at ERROR with its fields in extra."""
    esc = Escalator(Hooks(make_manager([], entrypoints=False)))
    with caplog.at_level(logging.INFO, logger="seawall.escalation"):
        _report(esc)
        esc.report(
            severity=Severity.CRITICAL,
            category=Category.TLS,
            key="k",
            request="GET https://x/",
            reason="certificate",
        )
        await esc.drain()
    levels = [(r.levelno, r.seawall_category) for r in caplog.records]  # type: ignore[attr-defined]
    assert levels == [(logging.ERROR, "authentication"), (logging.CRITICAL, "tls")]
    assert caplog.records[0].seawall_incident["count"] == 1  # type: ignore[attr-defined]


@pytest.fixture
async def receiver(aiohttp_server):
    """A local webhook receiver that fails its first POST with a 503, then accepts."""
    received: list[dict[str, Any]] = []
    answers = [503]

    async def hook(request: web.Request) -> web.Response:
        if answers:
            return web.Response(status=answers.pop())
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook/T0KEN", hook)
    server = await aiohttp_server(app, host="127.0.0.1")
    return server, received


async def test_webhook_sink_posts_slack_compatible_json(upstream, make_session, receiver):
    """A 401 reaches the webhook as JSON with text and every field, after one retry."""
    up, server = upstream
    up.then(status(401))
    hook_server, received = receiver
    sink = WebhookSink(str(hook_server.make_url("/hook/T0KEN")), max_per_minute=5)
    sw = seawall.Seawall(plugins=[sink], entrypoints=False)
    async with make_session(sw) as session, session.get(server.make_url("/v1")) as resp:
        assert resp.status == 401
    await sw.escalator.drain()
    (body,) = received
    assert body["text"].startswith("[HIGH] authentication on ")
    assert body["category"] == "authentication"
    assert body["severity"] == "HIGH"
    assert body["count"] == 1
    assert body["request"].startswith("GET http://127.0.0.1")
    assert {"key", "reason", "first_seen", "last_seen"} <= set(body)
    assert sink.stats == {"sent": 1, "failed": 0, "rate_limited": 0, "retried": 1}
    assert up.hits == 1  # the sink's own POSTs never went through seawall
    await sw.aclose()
    assert sink._session is None


async def test_webhook_rate_limit_drops_and_counts(receiver):
    """Past max_per_minute, incidents are dropped and counted."""
    hook_server, received = receiver
    sink = WebhookSink(str(hook_server.make_url("/hook/T0KEN")), max_per_minute=2, retries=1)
    esc = Escalator(Hooks(make_manager([sink], entrypoints=False)))
    for n in range(5):
        _report(esc, key=f"k{n}")
    await esc.drain()
    await sink.aclose()
    assert sink.stats["rate_limited"] == 3
    assert len(received) == 2


def test_webhook_sink_checks_its_url_without_showing_the_token():
    """A bad URL is refused with a message that does not repeat the path's token."""
    with pytest.raises(ValueError, match="http:// or https://") as info:
        WebhookSink("ftp://hooks.example/T0KEN")
    assert "T0KEN" not in str(info.value)
    assert "T0KEN" not in repr(WebhookSink("https://hooks.example/services/T0KEN"))


def test_webhook_sink_from_env(monkeypatch):
    """from_env builds a sink only when SEAWALL_WEBHOOK_URL is set."""
    monkeypatch.delenv("SEAWALL_WEBHOOK_URL", raising=False)
    assert WebhookSink.from_env() is None
    monkeypatch.setenv("SEAWALL_WEBHOOK_URL", "https://hooks.example/x")
    sink = WebhookSink.from_env(max_per_minute=3)
    assert sink is not None
    assert sink.max_per_minute == 3


# --- incidents of sync callers (threads without a running loop) ---------------------


class Forbidden(Exception):
    """What an SDK raises for a 403: escalated (HIGH)."""

    status_code = 403


def _forbidden() -> None:
    raise Forbidden("not allowed")


class ThreadSink:
    """A plain ``def`` sink that says when it has an incident (a threading event)."""

    def __init__(self) -> None:
        self.incidents: list[Incident] = []
        self.told = threading.Event()

    @seawall.hookimpl
    def seawall_escalate(self, incident: Incident) -> None:
        self.incidents.append(incident)
        self.told.set()


def test_a_program_without_asyncio_still_escalates() -> None:
    """``sw.call_sync`` with no event loop anywhere: the incident reaches the sinks."""
    sink = ThreadSink()
    sw = seawall.Seawall(entrypoints=False, plugins=[sink])
    with pytest.raises(Forbidden):
        sw.call_sync(_forbidden, key="payments")
    assert sink.told.wait(10)  # bounded: delivered off the caller's thread
    [incident] = sink.incidents
    assert (incident.key, incident.category) == ("payments", Category.AUTHORIZATION)
    assert sw.escalator.stats["overflow"] == 0


def test_a_dropped_seawall_leaves_no_escalation_thread_behind() -> None:
    """A program that makes Seawalls and drops them without aclose() (one per job, say)
    must not keep one idle thread each: the escalator's own loop stops when it is collected."""
    before = set(threading.enumerate())

    def job() -> threading.Thread:
        sink = ThreadSink()
        sw = seawall.Seawall(entrypoints=False, plugins=[sink])
        with pytest.raises(Forbidden):
            sw.call_sync(_forbidden, key="payments")
        assert sink.told.wait(10)  # delivered on the escalator's own loop
        [thread] = [
            t for t in threading.enumerate() if t not in before and t.name == "seawall-escalation"
        ]
        return thread

    thread = job()
    for _ in range(50):  # bounded: a collection or two, then the thread closes its loop
        gc.collect()
        thread.join(0.2)
        if not thread.is_alive():
            break
    assert not thread.is_alive()


async def test_a_sync_caller_beside_the_loop_escalates_on_the_loop() -> None:
    """A sync caller in a thread (a framework's thread pool): the incident goes to the loop
    the Seawall was built on, where an ``async def`` sink is awaited."""
    sink = Sink()
    sw = seawall.Seawall(entrypoints=False, plugins=[sink])
    loop = asyncio.get_running_loop()
    told = asyncio.Event()
    calls: list[asyncio.AbstractEventLoop] = []

    class Where:
        @seawall.hookimpl
        async def seawall_escalate(self, incident: Incident) -> None:
            calls.append(asyncio.get_running_loop())
            told.set()

    sw.register(Where())

    def caller() -> None:
        with pytest.raises(Forbidden):
            sw.call_sync(_forbidden, key="payments")

    await asyncio.to_thread(caller)
    await asyncio.wait_for(told.wait(), 10)
    assert calls == [loop]
    assert [i.key for i in sink.incidents] == ["payments"]
    await sw.aclose()


async def test_the_webhook_posts_for_sync_callers_and_then_for_the_loop(receiver):
    """Built outside any loop and first told from a thread (the escalator's own loop posts),
    then told on the app's loop: the sink makes a session for the new loop and posts again."""
    hook_server, received = receiver
    sink = WebhookSink(str(hook_server.make_url("/hook/T0KEN")), max_per_minute=10)
    sw = await asyncio.to_thread(seawall.Seawall, entrypoints=False, plugins=[sink])

    def caller() -> None:
        with pytest.raises(Forbidden):
            sw.call_sync(_forbidden, key="from-a-thread")

    await asyncio.to_thread(caller)
    for _ in range(200):  # bounded: the own loop's post reaches the receiver on this loop
        if received:
            break
        await asyncio.sleep(0.01)
    with pytest.raises(Forbidden):
        await sw.call(_forbidden_async, key="from-the-loop")
    await sw.escalator.drain()
    assert [body["key"] for body in received] == ["from-a-thread", "from-the-loop"]
    assert sink.stats["failed"] == 0
    await sw.aclose()


async def _forbidden_async() -> None:
    raise Forbidden("not allowed")


async def test_the_webhook_never_follows_a_redirect_with_its_headers(aiohttp_server):
    """A receiver redirecting elsewhere: the sink's token header and the incident stay home."""
    elsewhere: list[dict[str, str]] = []

    async def steal(request: web.Request) -> web.Response:
        elsewhere.append(dict(request.headers))
        return web.Response(text="ok")

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", steal)
    thief = await aiohttp_server(other, host="127.0.0.1")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(str(thief.make_url("/steal")))

    home = web.Application()
    home.router.add_post("/hook", moved)
    server = await aiohttp_server(home, host="127.0.0.1")
    sink = WebhookSink(str(server.make_url("/hook")), headers={"X-Api-Key": "SECRET-H"})
    incident = Incident(
        severity=Severity.HIGH,
        category=Category.AUTHENTICATION,
        key="k",
        request="GET https://api.example/",
        reason="HTTP 401",
        first_seen=0.0,
        last_seen=0.0,
    )
    with pytest.raises(WebhookError, match="HTTP 307, a redirect, not followed") as info:
        await sink.post(incident)
    await sink.aclose()
    assert elsewhere == []
    assert "SECRET-H" not in str(info.value)


async def test_a_sink_raising_cancelled_error_ends_neither_the_worker_nor_other_sinks():
    """An async sink whose own await was cancelled: a sink error; every incident still
    reaches the other sink, and aclose still stops the worker."""

    class Cancelled:
        @seawall.hookimpl
        async def seawall_escalate(self, incident: Incident) -> None:
            raise asyncio.CancelledError

    good = Sink()
    hooks = Hooks(
        make_manager(
            [Cancelled(), good], entrypoints=False, blocked=["seawall.builtin.logging_sink"]
        )
    )
    esc = Escalator(hooks)
    for n in range(3):
        _report(esc, key=f"k{n}")
    await esc.drain()
    assert [i.key for i in good.incidents] == ["k0", "k1", "k2"]
    assert esc.stats["sink_errors"] == 3
    await esc.aclose()


@pytest.mark.parametrize("mutator_first", [True, False])
async def test_a_sink_that_changes_the_context_changes_it_for_itself_only(mutator_first):
    """Sinks share no context: one that pops or adds names leaves the others' intact."""

    class Mutator:
        @seawall.hookimpl
        async def seawall_escalate(self, incident: Incident) -> None:
            incident.context.pop("critical", None)
            incident.context["api_key"] = "leaked-by-a-sink"

    good = Sink()
    plugins = [Mutator(), good] if mutator_first else [good, Mutator()]
    hooks = Hooks(
        make_manager(plugins, entrypoints=False, blocked=["seawall.builtin.logging_sink"])
    )
    esc = Escalator(hooks)
    _report(esc)
    await esc.drain()
    (seen,) = good.incidents
    assert seen.context == {"api_key": "***", "note": "Bearer ***", "critical": True}
    await esc.aclose()


class SlowToStop:
    """A sink that hangs, and whose clean-up on cancellation takes its time too."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.stopping = asyncio.Event()

    @seawall.hookimpl
    async def seawall_escalate(self, incident: Incident) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.stopping.set()
            await asyncio.Event().wait()  # until cancelled again
            raise


async def test_a_close_cancelled_while_it_stops_the_worker_is_cancelled() -> None:
    """The caller of aclose, cancelled while aclose waits for the worker to stop, sees
    its CancelledError: it was swallowed with the worker's own, and the caller's
    shutdown went on as if nobody had asked it to stop."""
    sink = SlowToStop()
    hooks = Hooks(make_manager([sink], entrypoints=False, blocked=["seawall.builtin.logging_sink"]))
    esc = Escalator(hooks, EscalationPolicy(sink_timeout=60.0))
    _report(esc)
    await asyncio.wait_for(sink.started.wait(), 60)
    closing = asyncio.create_task(esc.aclose(within=0.0))
    await asyncio.wait_for(sink.stopping.wait(), 60)  # aclose waits for the worker's end
    closing.cancel()
    done, _pending = await asyncio.wait({closing}, timeout=60)
    assert done == {closing}
    assert closing.cancelled()
    assert esc._worker is not None
    assert esc._worker.done()


async def test_a_seawall_close_cancelled_while_incidents_drain_still_closes_plugins() -> None:
    """``sw.aclose()`` cancelled while it delivers incidents (a shutdown's own timeout)
    still runs its closers (the fleet's client, ``on_close``), then is cancelled."""
    sink = Sink("hang")
    sw = seawall.Seawall(entrypoints=False, plugins=[sink])
    closed = asyncio.Event()

    async def close() -> None:
        closed.set()

    sw.on_close(close)
    started = asyncio.Event()
    sink.waiting = asyncio.Event()  # the sink hangs until the test ends

    class Started:
        @seawall.hookimpl
        async def seawall_escalate(self, incident: Incident) -> None:
            started.set()

    sw.register(Started())
    _report(sw.escalator)
    await asyncio.wait_for(started.wait(), 60)
    closing = asyncio.create_task(sw.aclose())
    await asyncio.sleep(0)  # one step: aclose runs into its drain, where it waits
    closing.cancel()
    done, _pending = await asyncio.wait({closing}, timeout=60)
    assert done == {closing}
    assert closing.cancelled()
    assert closed.is_set()
    sink.waiting.set()
