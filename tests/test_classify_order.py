"""Who answers first: the user's patterns, then the built-ins by priority; and who is to blame.

User patterns win over exception types and HTTP statuses; a TLS handshake
failure is TLS; an unparsable answer is the upstream's failure; errors in
the caller's own code are neither retried nor counted for or against the
upstream.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

import seawall
from seawall import BreakerState, Category, Classification
from seawall.plugins.manager import BUILTIN_PREFIX

from ._helpers import Clock, Recorder
from ._servers import RawServer, read_request, reset
from .conftest import status


def _sw(*plugins: object, **kwargs: object) -> seawall.Seawall:
    policy = kwargs.pop("policy", None) or seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=3),
        breaker=seawall.BreakerPolicy(failure_threshold=10),
    )
    return seawall.Seawall(policy, entrypoints=False, plugins=list(plugins), **kwargs)  # type: ignore[arg-type]


DECLINED = Classification(category=Category.CLIENT, reason="card declined: ask for another card")


# --- the order of the built-ins ---------------------------------------------------------


def test_builtins_are_asked_in_priority_order() -> None:
    """Every hook calls the built-ins lowest PRIORITY first, whatever pluggy's list order."""
    from seawall.plugins.builtin import BUILTIN_MODULES, PRIORITY

    assert set(BUILTIN_MODULES) == set(PRIORITY)
    sw = _sw()
    for hook in ("seawall_classify", "seawall_backoff", "seawall_escalate"):
        asked = [
            name.removeprefix(BUILTIN_PREFIX)
            for name, _, _ in sw.hooks.impls(hook)
            if name.startswith(BUILTIN_PREFIX)
        ]
        assert asked == sorted(asked, key=PRIORITY.__getitem__), hook
    classify = [name for name, _, _ in sw.hooks.impls("seawall_classify")]
    assert classify == [
        "seawall.builtin.patterns",
        "seawall.builtin.llm",
        "seawall.builtin.exceptions",
        "seawall.builtin.http",
    ]


# --- user patterns before every built-in ---------------------------------------------


async def test_user_pattern_beats_the_exception_type() -> None:
    """ConnectionResetError('card declined') with a 'card declined' pattern: one try, ours."""
    recorder = Recorder()
    sw = _sw(recorder, patterns=[(r"card declined", DECLINED)])
    calls = 0

    async def charge() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionResetError("card declined")

    with pytest.raises(ConnectionResetError):
        await sw.call(charge, key="pay")
    assert calls == 1
    assert [e.category for e in recorder.of("attempt")] == ["client"]
    outcome = seawall.Outcome(key="pay", exception=ConnectionResetError("card declined"))
    assert sw.classify(outcome) == (DECLINED, "seawall.builtin.patterns")


async def test_user_pattern_beats_aiohttp_connection_errors(make_session) -> None:
    """A real reset from a 127.0.0.1 peer, matched by a user pattern: not retried."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        reset(writer)

    sw = _sw(patterns=[(r"reset by peer", DECLINED)])
    async with RawServer(handler) as server, make_session(sw) as session:
        with pytest.raises(seawall.RetriesExhaustedError) as caught:
            await session.get(server.url())
    assert isinstance(caught.value.__cause__, aiohttp.ClientOSError)
    assert "not retryable" in str(caught.value)
    assert server.connections == 1


async def test_user_pattern_matches_status_line_and_body(upstream, make_session) -> None:
    """An error response is matched as 'HTTP <status>' plus its body: beats the status table."""
    up, server = upstream
    up.then(status(503, "card declined by issuer"))
    sw = _sw(patterns=[(r"^HTTP 503\n.*card declined", DECLINED)])
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 503
        assert await resp.text() == "card declined by issuer"  # still readable
    assert up.hits == 1
    # Another 503 body is the status table's: retried.
    up.then(status(503, "busy"))
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 200
    assert up.hits == 3


async def test_typed_pattern_never_matches_a_response(upstream, make_session) -> None:
    """A pattern limited to exception types leaves responses to the status table."""
    up, server = upstream
    up.then(status(503, "card declined"))
    sw = _sw(patterns=[(r"card declined", DECLINED, (ConnectionError,))])
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 200
    assert up.hits == 2


async def test_fallback_keeps_the_user_patterns() -> None:
    """A plugin answering garbage sends the call to the fallback, which still asks our patterns."""

    class Garbage:
        @seawall.hookimpl
        def seawall_classify(self, outcome: seawall.Outcome) -> object:
            return "not a classification"

    sw = _sw(Garbage(), patterns=[(r"card declined", DECLINED)])
    calls = 0

    async def charge() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("card declined")

    with pytest.raises(RuntimeError):
        await sw.call(charge, key="pay")
    assert calls == 1  # a fresh classifier without our patterns said UNKNOWN: 2 tries
    ((plugin, hook),) = sw.hooks.faults
    assert (plugin.rpartition(".")[2], hook) == ("Garbage", "seawall_classify")


# --- TLS and garbage from the upstream ----------------------------------------------


async def test_https_to_a_plain_http_port_is_tls(aiohttp_server, make_session) -> None:
    """A TLS handshake with a plain-HTTP server fails: TLS, one attempt, an incident."""
    hits = 0

    async def plain(_request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1  # pragma: no cover - a TLS hello is no HTTP request
        return web.Response(text="plain")  # pragma: no cover

    app = web.Application()
    app.router.add_get("/", plain)
    server = await aiohttp_server(app, host="127.0.0.1")
    recorder = Recorder()
    sw = _sw(recorder)
    async with make_session(sw) as session:
        with pytest.raises(aiohttp.ClientSSLError):
            await session.get(f"https://127.0.0.1:{server.port}/")
    await sw.aclose()
    assert hits == 0
    assert [e.category for e in recorder.of("attempt")] == ["tls"]
    assert [i.category for i in recorder.incidents] == [Category.TLS]
    assert "handshake" in recorder.incidents[0].reason


async def test_an_unparsable_status_line_is_an_upstream_failure(make_session) -> None:
    """'garbage' instead of a status line is SERVER: retried, and counted by the breaker."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"garbage\r\n\r\n")
        await writer.drain()

    recorder = Recorder()
    sw = _sw(recorder)
    async with RawServer(handler) as server, make_session(sw) as session:
        with pytest.raises(seawall.RetriesExhaustedError) as caught:
            await session.get(server.url())
    assert isinstance(caught.value.__cause__, aiohttp.ClientResponseError)
    assert server.connections == 3
    assert [e.category for e in recorder.of("attempt")] == ["server"] * 3
    (key,) = sw.health()["keys"].values()
    assert key["consecutive_failures"] == 1  # the call failed, against the upstream
    assert key["failure_rate"] == 1.0


# --- the caller's own bugs --------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        KeyError("user_id"),
        IndexError("list index out of range"),
        TypeError("unsupported operand"),
        AttributeError("'NoneType' object has no attribute 'json'"),
        NameError("name 'respnse' is not defined"),
        ZeroDivisionError("division by zero"),
        AssertionError("rate limit must be positive"),  # the type wins over the message
        NotImplementedError("todo"),
        ModuleNotFoundError("No module named 'orjson'"),
    ],
    ids=lambda error: type(error).__name__,
)
async def test_caller_bugs_are_not_retried_nor_counted(error: Exception) -> None:
    """One attempt, the original exception, and the breaker's counts left as they were."""
    sw = _sw()

    async def flaky() -> None:
        raise ConnectionResetError("reset")

    with pytest.raises(ConnectionResetError):
        await sw.call(flaky, key="svc")  # three failed attempts, one failed call
    before = dict(sw.health()["keys"]["svc"])
    calls = 0

    async def buggy() -> None:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(type(error)) as caught:
        await sw.call(buggy, key="svc")
    assert caught.value is error
    assert calls == 1
    after = sw.health()["keys"]["svc"]
    for field in ("state", "failure_rate", "consecutive_failures"):
        assert after[field] == before[field], field
    assert sw.classify(seawall.Outcome(key="svc", exception=error))[0].category is Category.CALLER


async def test_a_stop_iteration_escaping_the_callers_code_is_not_the_upstreams_failure() -> None:
    """``next(it)`` past the end: Python raises it from an ``async def`` as a RuntimeError
    (PEP 479), seawall from a plain function as one too (``loud_stop``). Neither is retried
    nor counted: two of them opened the breaker of every caller of the key."""
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=3),
        breaker=seawall.BreakerPolicy(failure_threshold=2, minimum_calls=2, window=4),
    )
    sw = _sw(policy=policy)
    calls = 0

    async def first_row() -> int:
        nonlocal calls
        calls += 1
        return next(iter([]))

    def first_row_sync() -> int:
        nonlocal calls
        calls += 1
        return next(iter([]))

    for _ in range(3):
        with pytest.raises(RuntimeError) as raised:
            await sw.call(first_row, key="svc")
        assert isinstance(raised.value.__cause__, StopIteration)
        with pytest.raises(RuntimeError) as raised:
            sw.call_sync(first_row_sync, key="svc")
        assert isinstance(raised.value.__cause__, StopIteration)
    assert calls == 6  # one attempt each
    key = sw.health()["keys"]["svc"]
    assert key["state"] == "closed"
    assert (key["failure_rate"], key["consecutive_failures"]) == (0.0, 0)


async def test_a_half_open_probe_that_hits_a_caller_bug_keeps_the_breaker_half_open() -> None:
    """The probe's permit is given back: the breaker neither closes nor reopens."""
    clock = Clock()
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(failure_threshold=1, recovery_timeout=10.0),
    )
    sw = _sw(policy=policy, clock=clock)

    async def down() -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(ConnectionRefusedError):
        await sw.call(down, key="svc")
    breaker = sw.state_for("svc", policy).breaker
    assert breaker.state is BreakerState.OPEN
    clock.now += 60.0  # past the (jittered) recovery timeout

    async def buggy() -> None:
        return {}["missing"]  # type: ignore[no-any-return]

    with pytest.raises(KeyError):
        await sw.call(buggy, key="svc")
    assert breaker.state is BreakerState.HALF_OPEN

    async def fine() -> str:
        return "ok"

    assert await sw.call(fine, key="svc") == "ok"  # the permit came back: a probe may go
    assert breaker.state is BreakerState.CLOSED


def test_network_errors_stay_network_whatever_else_they_inherit() -> None:
    """OSError/ConnectionError subclasses (aiohttp's too) are the network's, not the caller's."""

    class OddReset(ConnectionResetError, TypeError):
        pass

    sw = _sw()
    for error in (
        OddReset("reset"),
        aiohttp.ClientConnectionResetError("reset"),
        aiohttp.ServerDisconnectedError(),
        OSError("no route"),
    ):
        category = sw.classify(seawall.Outcome(key="k", exception=error))[0].category
        assert category is not Category.CALLER, error
    assert (
        sw.classify(seawall.Outcome(key="k", exception=OddReset("x")))[0].category
        is Category.NETWORK
    )
