"""Plugins cannot stall the loop: blocking sinks run in a thread; async hooks awaited or refused."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from typing import Any

import pytest

import seawall
from seawall.escalation import EscalationPolicy, Incident
from seawall.outcome import Category, Severity
from seawall.plugins.manager import PluginError, make_manager

from .conftest import status


class BlockingSink:
    """A plain ``def`` sink that blocks its thread until ``release`` is set."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()
        self.calls = 0
        self.threads: set[str] = set()

    @seawall.hookimpl
    def seawall_escalate(self, incident: Incident) -> None:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        self.release.wait(10)  # bounded: a broken test never hangs for good
        self.returned.set()


def sink_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("seawall-sink:")]


def _report(sw: seawall.Seawall, key: str) -> None:
    sw.escalator.report(
        severity=Severity.HIGH,
        category=Category.AUTHENTICATION,
        key=key,
        request="GET http://upstream/",
        reason="HTTP 401",
    )


async def test_a_blocking_sink_never_stalls_requests(upstream, make_session, caplog):
    """While a sync sink blocks its thread, requests complete; it times out once; one thread."""
    up, server = upstream
    up.then(status(401))  # escalated: the sink is called and blocks
    sink = BlockingSink()
    sw = seawall.Seawall(
        plugins=[sink],
        entrypoints=False,
        blocked=["seawall.builtin.logging_sink"],
        escalation=EscalationPolicy(sink_timeout=0.2),
    )
    try:
        async with make_session(sw) as session:
            async with session.get(server.make_url("/auth")) as resp:
                assert resp.status == 401
            assert await asyncio.to_thread(sink.entered.wait, 5)
            for n in range(10):  # the loop is free: unrelated requests go through
                async with asyncio.timeout(5), session.get(server.make_url(f"/{n}")) as resp:
                    assert resp.status == 200
            assert not sink.returned.is_set()  # ... all while the sink was still blocked
            with caplog.at_level(logging.ERROR, logger="seawall.plugins"):
                await sw.escalator.drain(within=5)  # returns once sink_timeout has passed
            assert sw.escalator.stats["sink_timeouts"] == 1
            assert sw.escalator.stats["sink_errors"] == 1
            (logged,) = [r for r in caplog.records if "sink_timeout=0.2s" in r.getMessage()]
            assert "its thread is still running" in logged.getMessage()
            assert sum(sw.hooks.faults.values()) == 1
            # A second incident while the thread is still blocked: skipped, no new thread.
            _report(sw, "other")
            await sw.escalator.drain(within=5)
            assert sw.escalator.stats["sink_skipped"] == 1
            assert (sink.calls, len(sink_threads())) == (1, 1)
            # Once it returns, the sink gets incidents again, in a new thread.
            sink.release.set()
            for thread in sink_threads():
                await asyncio.to_thread(thread.join, 5)
            _report(sw, "third")
            await sw.escalator.drain(within=5)
            for thread in sink_threads():  # a loaded machine may start it after sink_timeout
                await asyncio.to_thread(thread.join, 5)
            assert sink.calls == 2
            assert len(sink.threads) == 1  # every call ran in a seawall-sink thread ...
            assert threading.main_thread().name not in sink.threads  # ... never the loop's
    finally:
        sink.release.set()
        await sw.aclose()


async def test_a_coroutine_a_sync_sink_returns_too_late_is_closed(caplog):
    """A plain ``def`` sink whose thread returns a coroutine after ``sink_timeout``: nobody
    awaits it, so it is closed (not dropped to warn "coroutine ... was never awaited")."""
    gate = threading.Event()
    made: list[Any] = []

    class LateSink:
        @seawall.hookimpl
        def seawall_escalate(self, incident: Incident) -> Any:
            gate.wait(10)  # released only once the sink has timed out
            made.append(asyncio.sleep(0))
            return made[-1]

    sw = seawall.Seawall(
        plugins=[LateSink()],
        entrypoints=False,
        blocked=["seawall.builtin.logging_sink"],
        escalation=EscalationPolicy(sink_timeout=0.01),
    )
    _report(sw, "k")
    with caplog.at_level(logging.ERROR, logger="seawall.plugins"):
        await sw.escalator.drain(within=5)
    assert sw.escalator.stats["sink_timeouts"] == 1
    gate.set()
    for thread in sink_threads():
        await asyncio.to_thread(thread.join, 5)  # its result reaches the loop before this
    await sw.aclose()
    (coroutine,) = made
    assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED


async def test_async_sink_is_awaited_on_the_loop():
    """An ``async def`` sink is awaited (with its own coroutine run on the event loop)."""
    loop = asyncio.get_running_loop()
    seen: list[tuple[str, bool]] = []

    class AsyncSink:
        @seawall.hookimpl
        async def seawall_escalate(self, incident: Incident) -> None:
            await asyncio.sleep(0)
            seen.append((incident.key, asyncio.get_running_loop() is loop))

    sw = seawall.Seawall(plugins=[AsyncSink()], entrypoints=False)
    _report(sw, "k")
    await sw.escalator.drain(within=5)
    await sw.aclose()
    assert seen == [("k", True)]
    assert sw.escalator.stats["sink_errors"] == 0


class AsyncClassifier:
    @seawall.hookimpl
    async def seawall_classify(self, outcome: seawall.Outcome) -> None:
        return None


class AsyncBackoff:
    @seawall.hookimpl
    async def seawall_backoff(self, attempt: int) -> float:
        return 0.0


class AsyncObserver:
    @seawall.hookimpl
    async def seawall_event(self, event: Any) -> None:
        return None


class AsyncConfigure:
    @seawall.hookimpl
    async def seawall_configure(self, seawall: Any) -> None:
        return None


@pytest.mark.parametrize(
    ("plugin", "hook"),
    [
        (AsyncClassifier(), "seawall_classify"),
        (AsyncBackoff(), "seawall_backoff"),
        (AsyncObserver(), "seawall_event"),
        (AsyncConfigure(), "seawall_configure"),
    ],
)
def test_async_impl_of_a_sync_hook_is_refused_at_construction(plugin: object, hook: str):
    """Seawall(plugins=[...]) refuses an async def impl of a synchronous hook, saying how to fix."""
    with pytest.raises(PluginError) as info:
        seawall.Seawall(plugins=[plugin], entrypoints=False)
    message = str(info.value)
    assert type(plugin).__qualname__ in message  # the plugin
    assert f"implements {hook} with 'async def'" in message  # the hook
    assert "Make it a plain 'def'" in message  # the fix


async def test_async_impl_is_refused_by_register_and_leaves_nothing_behind(upstream, make_session):
    """sw.register() refuses it too; the plugin is not registered and requests still work."""
    up, server = upstream
    up.then(status(503))
    sw = seawall.Seawall(entrypoints=False)
    with pytest.raises(PluginError, match="seawall_classify with 'async def'"):
        sw.register(AsyncClassifier())
    with pytest.raises(PluginError, match="seawall_backoff with 'async def'"):
        sw.plugin_manager.register(AsyncBackoff(), name="acme")
    assert sw.list_plugins() == []
    assert not sw.hooks.custom("seawall_classify")
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 200  # the 503 was classified (by the built-in) and retried
    assert up.hits == 2
    await sw.aclose()


def test_async_escalate_impl_is_accepted_by_register():
    """seawall_escalate is the hook that may be async: registering one is fine."""

    class Pager:
        @seawall.hookimpl
        async def seawall_escalate(self, incident: Incident) -> None:
            return None

    pm = make_manager([Pager()], entrypoints=False)
    assert [info.hooks for info in pm.list_plugins()] == [("seawall_escalate",)]
