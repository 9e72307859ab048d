"""Who is to blame: the caller's deadline, a broken body, the key of ``sw.call``, advice.

Each test runs real aiohttp requests against an upstream on 127.0.0.1 (or
``sw.call`` on a coroutine of ours) and checks what the breaker, the counters
and the caller see.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import seawall

from ._helpers import Recorder

#: Longest an upstream handler waits to be released: a bound, never reached in a passing run.
HANG = 10.0


class Slow:
    """An upstream handler that answers only once ``release`` is set (or after ``HANG``)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.hits = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        await request.read()
        if not self.release.is_set():
            await asyncio.wait_for(self.release.wait(), HANG)
        return web.Response(text="late")


@pytest.fixture
async def slow(aiohttp_server: Any) -> Any:
    handler = Slow()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    yield handler, server
    handler.release.set()


def _breaker_policy(**timeout: float | None) -> seawall.Policy:
    """A breaker that opens after 2 failed calls (or 2 failed attempts out of 2)."""
    return seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(
            failure_threshold=2, minimum_calls=2, window=10, recovery_timeout=30.0
        ),
        timeout=seawall.TimeoutPolicy(**timeout),
    )


def _clock() -> Callable[[], float]:
    """The loop's clock: on a ``virtual_time`` loop, the 50 ms deadlines and attempt limits
    below run out only once the request is at the upstream and everything waits (on real
    time a loaded machine could cut a call before the upstream saw it)."""
    return asyncio.get_running_loop().time


def _on_the_loops_clock(**timeout: float | None) -> seawall.Seawall:
    """A seawall with ``_breaker_policy(**timeout)`` on the loop's clock (``_clock``)."""
    return seawall.Seawall(_breaker_policy(**timeout), entrypoints=False, clock=_clock())


def _only_state(sw: seawall.Seawall) -> Any:
    (state,) = sw._states.values()
    return state


# --- 1. the caller's deadline is not the upstream's failure ----------------------


@pytest.mark.virtual_time
async def test_seawall_deadline_cuts_are_not_upstream_failures(
    slow: Any, make_session: Any
) -> None:
    """Calls cut by ``seawall.deadline()`` leave the breaker closed and count apart."""
    handler, server = slow
    sw = _on_the_loops_clock(attempt=10.0, deadline=None)
    async with make_session(sw) as session:
        for _ in range(4):
            with seawall.deadline(0.05), pytest.raises(seawall.DeadlineExceededError):
                await session.get(server.make_url("/"))
        handler.release.set()
        async with session.get(server.make_url("/")) as resp:  # another caller, no deadline
            assert resp.status == 200
    state = _only_state(sw)
    assert state.breaker.state is seawall.BreakerState.CLOSED
    assert state.breaker.failure_rate == 0.0
    assert handler.hits == 5
    key = sw.health()["keys"][state.key]
    assert key["cut_by_deadline"] == 4
    assert key["failures"] == {}
    assert sw.health()["cut_by_deadline"] == 4


@pytest.mark.virtual_time
async def test_short_policy_deadline_cuts_are_not_upstream_failures(
    slow: Any, make_session: Any
) -> None:
    """A ``TimeoutPolicy.deadline`` shorter than the attempt limit is the caller's own limit."""
    handler, server = slow
    sw = _on_the_loops_clock(attempt=10.0, deadline=0.05)
    async with make_session(sw) as session:
        for _ in range(4):
            with pytest.raises(seawall.DeadlineExceededError):
                await session.get(server.make_url("/"))
    state = _only_state(sw)
    assert state.breaker.state is seawall.BreakerState.CLOSED
    assert state.stats.cut_by_deadline == 4
    assert not state.stats.failures
    assert handler.hits == 4


@pytest.mark.virtual_time
async def test_the_policys_own_attempt_timeout_still_blames_the_upstream(
    slow: Any, make_session: Any
) -> None:
    """Only the attempt limit says the upstream is slow: two timeouts open the breaker."""
    handler, server = slow
    sw = _on_the_loops_clock(attempt=0.05, deadline=None)
    async with make_session(sw) as session:
        for _ in range(2):
            with pytest.raises(seawall.RetriesExhaustedError):
                await session.get(server.make_url("/"))
        with pytest.raises(seawall.CircuitOpenError):
            await session.get(server.make_url("/"))
    state = _only_state(sw)
    assert state.breaker.state is seawall.BreakerState.OPEN
    assert state.stats.failures == {"timeout": 2}
    assert state.stats.cut_by_deadline == 0
    assert handler.hits == 2


@pytest.mark.virtual_time
async def test_cut_attempts_are_not_logged_as_upstream_failures(
    slow: Any, make_session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An attempt cut by the caller's deadline logs at DEBUG, not as a WARNING about the
    upstream; it is still counted apart; the policy's own attempt timeout still warns."""
    handler, server = slow
    sw = _on_the_loops_clock(attempt=0.05, deadline=None)
    caplog.set_level(logging.DEBUG, logger="seawall.attempts")
    async with make_session(sw) as session:
        for _ in range(3):  # a hostile client's tiny X-Request-Timeout, as the ASGI sets it
            with seawall.deadline(0.01), pytest.raises(seawall.DeadlineExceededError):
                await session.get(server.make_url("/"))
        cut = [(r.levelno, r.getMessage()) for r in caplog.records]
        caplog.clear()
        with pytest.raises(seawall.RetriesExhaustedError):
            await session.get(server.make_url("/"))  # the upstream's own slowness
    assert [level for level, _ in cut] == [logging.DEBUG] * 3, cut
    assert all("TimeoutError" in text for _, text in cut)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    state = _only_state(sw)
    assert state.stats.cut_by_deadline == 3
    assert state.stats.failures == {"timeout": 1}
    assert handler.hits == 4


@pytest.mark.virtual_time
async def test_a_half_open_probe_cut_by_the_callers_deadline_returns_its_permit(
    upstream: Any, make_session: Any
) -> None:
    """No verdict from a probe the caller cut short: the next caller probes, and closes it."""
    up, server = upstream
    now = [0.0]
    sw = seawall.Seawall(
        _breaker_policy(attempt=10.0, deadline=None), entrypoints=False, clock=lambda: now[0]
    )
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.wait_for(release.wait(), HANG)
        return web.Response(text="late")

    up.then(
        *[_status(503)] * 2,
        hang,
    )
    async with make_session(sw) as session:
        for _ in range(2):
            async with session.get(server.make_url("/")) as resp:
                assert resp.status == 503
        state = _only_state(sw)
        assert state.breaker.state is seawall.BreakerState.OPEN
        now[0] += 31.0  # past the recovery timeout: the next call is a probe
        with seawall.deadline(0.05), pytest.raises(seawall.DeadlineExceededError):
            await session.get(server.make_url("/"))
        release.set()
        assert state.breaker.state is seawall.BreakerState.HALF_OPEN
        async with session.get(server.make_url("/")) as resp:  # the next probe gets in
            assert resp.status == 200
    assert state.breaker.state is seawall.BreakerState.CLOSED
    assert state.stats.cut_by_deadline == 1
    assert up.hits == 4


def _status(code: int) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(status=code, text=f"status {code}")

    return handler


# --- 2. a response with a status is not re-sent when its body breaks ------------------


async def _broken_json(request: web.Request) -> web.StreamResponse:
    """A 200 JSON answer whose connection ends after a third of the promised body."""
    return await _broken(request, 200)


async def _broken_503(request: web.Request) -> web.StreamResponse:
    """A 503 JSON answer whose connection ends after a third of the promised body."""
    return await _broken(request, 503)


async def _broken(request: web.Request, code: int) -> web.StreamResponse:
    await request.read()
    resp = web.StreamResponse(status=code, headers={"Content-Type": "application/json"})
    resp.content_length = 300
    await resp.prepare(request)
    await resp.write(b'{"id": "chatcmpl-1", "usage": {"prompt_tokens": 1' + b" " * 50)
    assert request.transport is not None
    request.transport.close()  # flushes what was written, then ends the connection mid-body
    return resp


async def test_an_llm_post_whose_success_body_breaks_is_sent_once(
    upstream: Any, make_session: Any
) -> None:
    """A 200 whose body breaks off is not re-sent (no second bill): the caller gets the error."""
    up, server = upstream
    up.default = _broken_json
    sw = seawall.Seawall(routes={"127.0.0.1": seawall.Policy.for_llm()}, entrypoints=False)
    async with make_session(sw) as session:
        with pytest.raises(aiohttp.ClientPayloadError) as raised:
            await session.post(server.make_url("/v1/chat/completions"), json={})
    assert up.hits == 1
    assert any("never re-sent" in note for note in raised.value.__notes__)
    state = _only_state(sw)
    assert state.breaker.failure_rate == 0.0  # the upstream answered
    assert state.breaker.consecutive_failures == 0


async def test_a_post_whose_error_body_breaks_is_not_resent(
    upstream: Any, make_session: Any
) -> None:
    """Even with an Idempotency-Key, a POST whose error body breaks is not re-sent."""
    up, server = upstream

    up.default = _broken_503
    sw = seawall.Seawall(_breaker_policy(), entrypoints=False)
    headers = {"Idempotency-Key": "order-1"}
    async with make_session(sw) as session:
        with pytest.raises(aiohttp.ClientPayloadError):
            await session.post(server.make_url("/orders"), json={}, headers=headers)
    assert up.hits == 1


async def test_a_get_whose_error_body_breaks_is_still_retried(
    upstream: Any, make_session: Any
) -> None:
    """A GET is safe to send again: a broken error body is a network failure, retried."""
    up, server = upstream

    up.then(_broken_503)
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=2)), entrypoints=False
    )
    async with make_session(sw) as session, session.get(server.make_url("/orders")) as resp:
        assert resp.status == 200
    assert up.hits == 2


# --- 4. the default key of sw.call never holds the arguments ----------------------------

SECRET = "sk-live-0123456789abcdef"


async def fetch_profile(user: str, *, headers: dict[str, str]) -> str:
    raise ConnectionResetError("connection reset by peer")


class Client:
    async def fetch(self, headers: dict[str, str]) -> str:
        raise ConnectionResetError("connection reset by peer")


class Fetcher:
    """A callable object: no ``__qualname__`` of its own."""

    async def _go(self) -> str:
        raise ConnectionResetError("connection reset by peer")

    def __call__(self, headers: dict[str, str]) -> Any:
        return self._go()


async def test_a_partial_with_a_secret_header_is_keyed_by_its_functions_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing of a partial's arguments reaches health(), events or logs: the key is the name."""
    rec = Recorder()
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=2)),
        plugins=[rec],
        entrypoints=False,
    )
    fn = functools.partial(fetch_profile, "u1", headers={"Authorization": f"Bearer {SECRET}"})
    caplog.set_level(logging.DEBUG, logger="seawall")
    with pytest.raises(ConnectionResetError):
        await sw.call(fn)
    health = sw.health()
    assert list(health["keys"]) == ["fetch_profile"]
    assert rec.events
    assert {event.key for event in rec.events} == {"fetch_profile"}
    assert caplog.records
    texts = [json.dumps(health, default=str), caplog.text]
    texts += [json.dumps(event.as_dict(), default=str) for event in rec.events]
    for text in texts:
        assert SECRET not in text
        assert "Authorization" not in text


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (
            lambda: functools.partial(functools.partial(fetch_profile, "u1"), headers={}),
            "fetch_profile",
        ),
        (lambda: functools.partial(Client().fetch, {"Authorization": SECRET}), "Client.fetch"),
        (lambda: Client().fetch, "Client.fetch"),
        (lambda: functools.partial(Fetcher(), {"Authorization": SECRET}), "Fetcher"),
    ],
)
async def test_the_default_key_unwraps_partials_and_methods(
    make: Callable[[], Callable[..., Any]], key: str
) -> None:
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1)), entrypoints=False
    )
    fn = make()
    with pytest.raises(ConnectionResetError):
        await sw.call(fn, *(() if isinstance(fn, functools.partial) else ({},)))
    assert list(sw.health()["keys"]) == [key]


# --- 5. advice that fits the failure ----------------------------------------------------


async def test_a_name_that_does_not_resolve_is_not_advised_more_attempts(
    make_session: Any,
) -> None:
    """``.invalid`` never resolves (RFC 6761): the advice is about the name, not max_attempts."""
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=2)), entrypoints=False
    )
    async with make_session(sw) as session:
        with pytest.raises(seawall.RetriesExhaustedError) as raised:
            await session.get("http://nonexistent.invalid/things")
    text = str(raised.value)
    assert "host name did not resolve" in text
    assert "max_attempts" not in text


async def test_a_method_the_policy_excludes_is_not_called_not_idempotent(
    upstream: Any, make_session: Any
) -> None:
    """A GET left out of retry_methods is stopped for that reason, not as 'not idempotent'."""
    up, server = upstream
    up.then(_status(503))
    rec = Recorder()
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=3, retry_methods={"PUT"})),
        plugins=[rec],
        entrypoints=False,
    )
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 503
    (call,) = rec.of("call")
    assert "retry_methods excludes GET" in call.stopped_because
    assert "not idempotent" not in call.stopped_because
    assert up.hits == 1


async def test_a_post_without_idempotency_key_keeps_its_advice(
    upstream: Any, make_session: Any
) -> None:
    up, server = upstream
    up.then(_status(503))
    rec = Recorder()
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=3)),
        plugins=[rec],
        entrypoints=False,
    )
    async with make_session(sw) as session, session.post(server.make_url("/"), json={}) as resp:
        assert resp.status == 503
    (call,) = rec.of("call")
    assert call.stopped_because == (
        "POST is not idempotent (send an Idempotency-Key header, "
        "or add POST to RetryPolicy.retry_methods if the upstream takes repeats)"
    )
    assert up.hits == 1
