"""The plugin system: order, fault isolation, loud misspellings, and each of the five hooks."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import seawall
from seawall import Category, Classification
from seawall.events import Event
from seawall.plugins import hookspecs
from seawall.plugins.manager import PluginError

from ._helpers import Recorder, policy
from .conftest import status

HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("seawall_"))


def _sw(*plugins: object, **kwargs: Any) -> seawall.Seawall:
    return seawall.Seawall(
        policy(max_attempts=3), entrypoints=False, plugins=list(plugins), **kwargs
    )


class Boom:
    """A plugin whose classify and backoff raise."""

    @seawall.hookimpl
    def seawall_classify(self, outcome: seawall.Outcome) -> Classification:
        raise RuntimeError("classifier bug")

    @seawall.hookimpl
    def seawall_backoff(self, attempt: int) -> float:
        raise RuntimeError("backoff bug")


def test_the_five_hooks() -> None:
    """The hook contract is exactly the five documented hooks."""
    assert HOOKS == [
        "seawall_backoff",
        "seawall_classify",
        "seawall_configure",
        "seawall_escalate",
        "seawall_event",
    ]


def test_user_plugins_are_called_before_builtins() -> None:
    """A user plugin comes first for every hook; built-ins (trylast) come last."""
    sw = _sw(Recorder())
    for hook in ("seawall_classify", "seawall_escalate", "seawall_backoff"):
        names = [name for name, _, _ in sw.hooks.impls(hook)]
        builtin = [n.startswith("seawall.builtin.") for n in names]
        assert builtin == sorted(builtin), names  # every user plugin before any built-in
    assert not sw.hooks.impls("seawall_classify")[0][0].startswith("seawall.builtin.")


async def test_a_raising_plugin_is_isolated(upstream, make_session, caplog) -> None:
    """A classifier that raises is skipped: the built-in answer is used, logged once, counted."""
    up, server = upstream
    up.default = status(503)
    sw = _sw(Boom())
    caplog.set_level(logging.ERROR, logger="seawall.plugins")
    async with make_session(sw) as session:
        for _ in range(2):
            async with session.get(server.make_url("/")) as resp:
                assert resp.status == 503
    assert up.hits == 6  # the built-in said "retryable" each time
    faults = sw.health()["plugin_faults"]
    [classify] = [n for k, n in faults.items() if k.endswith(".seawall_classify")]
    [backoff] = [n for k, n in faults.items() if k.endswith(".seawall_backoff")]
    assert (classify, backoff) == (6, 4)
    logged = [r for r in caplog.records if "raised in" in r.getMessage()]
    assert len(logged) == 2  # once per (plugin, hook)


async def test_a_classifier_returning_garbage_is_a_fault(upstream, make_session) -> None:
    """A classify result that is not a Classification is counted and the built-in used."""

    class Garbage:
        @seawall.hookimpl
        def seawall_classify(self) -> str:
            return "retry please"

    up, server = upstream
    up.then(status(503))
    sw = _sw(Garbage())
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 200
    assert up.hits == 2
    assert sw.health()["plugin_faults"] == {
        "tests.test_plugins.test_a_classifier_returning_garbage_is_a_fault.<locals>.Garbage"
        ".seawall_classify": 2  # the 503 and the 200
    }


def test_misspelt_hook_fails_loudly() -> None:
    """A plugin implementing 'seawall_clasify' is refused with a message saying how to fix it."""

    class Typo:
        @seawall.hookimpl
        def seawall_clasify(self, outcome: seawall.Outcome) -> None:
            return None

    with pytest.raises(PluginError) as info:
        _sw(Typo())
    text = str(info.value)
    assert text.startswith(
        "plugin 'tests.test_plugins.test_misspelt_hook_fails_loudly.<locals>.Typo' "
        "implements seawall_clasify, which is not a seawall hook; "
        "did you mean seawall_classify? rename it"
    )
    assert "object at 0x" not in text


def test_optional_unknown_hook_is_allowed() -> None:
    """optionalhook=True lets a plugin carry hooks for a newer seawall."""

    class Future:
        @seawall.hookimpl(optionalhook=True)
        def seawall_from_the_future(self) -> None:
            return None

    _sw(Future())


def test_blocked_builtins() -> None:
    """A blocked built-in is not registered; add_pattern needs the patterns plugin."""
    sw = _sw(
        blocked=[
            "seawall.builtin.logging_sink",
            "seawall.builtin.exceptions",
            "seawall.builtin.patterns",
        ]
    )
    names = {info.name for info in sw.list_plugins(include_builtin=True)}
    assert "seawall.builtin.logging_sink" not in names
    assert "seawall.builtin.http" in names
    with pytest.raises(RuntimeError, match=r"'seawall\.builtin\.patterns'.*unblock it"):
        sw.add_pattern("x", Classification(category=Category.CLIENT))
    assert sw.classifier_stats() == {}


async def test_blocked_http_classifier_falls_back_to_the_table(upstream, make_session) -> None:
    """With the HTTP classifier blocked, the engine still classifies statuses by the table."""
    up, server = upstream
    up.then(status(503))
    sw = _sw(blocked=["seawall.builtin.http"])
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 200
    assert up.hits == 2


def test_list_plugins() -> None:
    """list_plugins shows user plugins with their hooks; include_builtin adds the built-ins."""
    sw = _sw(Recorder(), Recorder())
    first, second = sw.list_plugins()
    assert (first.name, second.name) == ("tests._helpers.Recorder", "tests._helpers.Recorder#2")
    info = first
    assert info.hooks == ("seawall_classify", "seawall_escalate", "seawall_event")
    assert not info.builtin
    assert info.as_dict()["name"] == info.name
    everything = sw.list_plugins(include_builtin=True)
    builtins = [i.name for i in everything if i.builtin]
    assert builtins == sorted(
        [
            "seawall.builtin.backoff",
            "seawall.builtin.exceptions",
            "seawall.builtin.http",
            "seawall.builtin.llm",
            "seawall.builtin.logging_sink",
            "seawall.builtin.patterns",
        ]
    )


def test_register_later_invalidates_the_cache() -> None:
    """A plugin registered after construction is called from then on."""
    sw = _sw()
    assert not sw.hooks.has("seawall_event")
    sw.register(Recorder())
    assert sw.hooks.has("seawall_event")


# --- one test per hook: called with the documented arguments, return used ----------------------


async def test_hook_seawall_classify(upstream, make_session) -> None:
    """seawall_classify gets the Outcome of each attempt; its Classification decides."""
    seen: list[seawall.Outcome] = []

    class NeverRetry:
        @seawall.hookimpl
        def seawall_classify(self, outcome: seawall.Outcome) -> Classification | None:
            seen.append(outcome)
            if outcome.status == 503:
                return Classification(category=Category.CLIENT, reason="ours")
            return None

    up, server = upstream
    up.default = status(503, body="busy", **{"X-Trace": "t1"})
    sw = _sw(NeverRetry())
    async with make_session(sw) as session:
        with seawall.context(operation="lookup"):
            async with session.get(server.make_url("/p?q=1")) as resp:
                assert resp.status == 503
    assert up.hits == 1
    [outcome] = seen
    assert outcome.key == f"http://127.0.0.1:{server.port}"
    assert outcome.method == "GET"
    assert str(outcome.url) == str(server.make_url("/p?q=1"))
    assert outcome.attempt == 1
    assert outcome.status == 503
    assert outcome.headers["x-trace"] == "t1"
    assert outcome.body == b"busy"
    assert outcome.exception is None
    assert outcome.elapsed >= 0
    assert outcome.context == {"operation": "lookup"}
    assert outcome.failed


async def test_hook_seawall_backoff() -> None:
    """seawall_backoff gets attempt, outcome, classification and policy; its seconds are used."""
    calls: list[dict[str, Any]] = []

    class Pace:
        @seawall.hookimpl
        def seawall_backoff(
            self,
            attempt: int,
            outcome: seawall.Outcome,
            classification: Classification,
            policy: seawall.RetryPolicy,
        ) -> float:
            calls.append(
                {"attempt": attempt, "outcome": outcome, "c": classification, "policy": policy}
            )
            return 0.25 * attempt

    rec = Recorder()
    sw = _sw(Pace(), rec)

    async def down() -> None:
        raise ConnectionResetError("connection reset")

    with pytest.raises(ConnectionResetError):
        await sw.call(down, key="paced")
    assert [c["attempt"] for c in calls] == [1, 2]
    assert all(c["policy"] is sw.policy.retry for c in calls)
    assert calls[0]["c"].category is Category.NETWORK
    assert isinstance(calls[0]["outcome"].exception, ConnectionResetError)
    assert rec.delays() == [(0.25, "backoff"), (0.5, "backoff")]


async def test_hook_seawall_escalate(upstream, make_session) -> None:
    """seawall_escalate gets an Incident; a returned awaitable is awaited off the request path."""
    delivered: list[seawall.Incident] = []
    started = asyncio.Event()

    class Pager:
        @seawall.hookimpl
        def seawall_escalate(self, incident: seawall.Incident) -> Any:
            async def send() -> None:
                started.set()
                await asyncio.sleep(0)
                delivered.append(incident)

            return send()

    up, server = upstream
    up.default = status(401)
    sw = _sw(Pager(), blocked=["seawall.builtin.logging_sink"])
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 401
        assert delivered == []  # the request did not wait for the sink
    await sw.aclose()
    [incident] = delivered
    assert incident.category is Category.AUTHENTICATION
    assert incident.severity is seawall.Severity.HIGH
    assert incident.key == f"http://127.0.0.1:{server.port}"
    assert incident.request == f"GET {server.make_url('/')}"
    assert incident.count == 1
    assert sw.health()["escalation"]["dispatched"] == 1


async def test_hook_seawall_event(upstream, make_session) -> None:
    """seawall_event gets frozen events: attempts, retries and the call's end."""
    events: list[Event] = []

    class Watch:
        @seawall.hookimpl
        def seawall_event(self, event: Event) -> None:
            events.append(event)

    up, server = upstream
    up.then(status(503))
    sw = _sw(Watch())
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 200
    assert [e.kind for e in events] == ["attempt", "retry", "attempt", "call"]
    first, _retry, _second, call = events
    assert (first.status, first.category, first.attempt) == (503, "server", 1)  # type: ignore[attr-defined]
    assert (call.attempts, call.outcome, call.status) == (2, "success", 200)  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        first.key = "other"  # type: ignore[misc]


async def test_hook_seawall_configure() -> None:
    """seawall_configure is called once with the new Seawall; what it sets up takes effect."""
    configured: list[seawall.Seawall] = []

    class Setup:
        @seawall.hookimpl
        def seawall_configure(self, seawall: seawall.Seawall) -> None:
            configured.append(seawall)
            seawall.add_pattern(
                r"card declined", Classification(category=Category.VALIDATION, reason="card")
            )

    sw = _sw(Setup())
    assert configured == [sw]
    calls = 0

    async def pay() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionResetError("connection reset: card declined")

    with pytest.raises(ConnectionResetError):
        await sw.call(pay, key="pay")
    assert calls == 1  # the pattern the plugin added wins over the exception's type

    async def pay_plain() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("card declined")

    calls = 0
    with pytest.raises(RuntimeError):
        await sw.call(pay_plain, key="pay")
    assert calls == 1  # the pattern the plugin added made it VALIDATION


async def test_raising_event_escalate_and_configure_plugins_are_isolated(
    upstream, make_session
) -> None:
    """Faults in the 'all results' hooks are contained; other sinks still get the incident."""
    delivered: list[seawall.Incident] = []
    never = asyncio.Event()

    class Broken:
        @seawall.hookimpl
        def seawall_configure(self) -> None:
            raise RuntimeError("configure bug")

        @seawall.hookimpl
        def seawall_event(self) -> None:
            raise RuntimeError("event bug")

        # The sinks are ``async def``: on the loop, each raises, hangs or delivers for
        # sure within sink_timeout (a plain ``def`` sink's thread may start later than
        # that on a loaded machine and count as hung; test_plugin_safety.py has those).
        @seawall.hookimpl
        async def seawall_escalate(self) -> None:
            raise RuntimeError("sink bug")

    class Hangs:
        @seawall.hookimpl
        async def seawall_escalate(self) -> None:
            await never.wait()

    class Good:
        @seawall.hookimpl
        async def seawall_escalate(self, incident: seawall.Incident) -> None:
            delivered.append(incident)

    up, server = upstream
    up.default = status(403)
    sw = _sw(
        Broken(),
        Hangs(),
        Good(),
        blocked=["seawall.builtin.logging_sink"],
        escalation=seawall.EscalationPolicy(sink_timeout=0.05),
    )
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 403
    async with asyncio.timeout(5):
        await sw.aclose()
    assert len(delivered) == 1
    faults = sw.health()["plugin_faults"]
    assert {name.rsplit(".", 1)[1] for name in faults} == {
        "seawall_configure",
        "seawall_event",
        "seawall_escalate",
    }
    escalation = sw.health()["escalation"]
    assert escalation["sink_errors"] == 2  # the one that raised and the one that hung
    assert escalation["sink_timeouts"] == 1  # the one that hung
