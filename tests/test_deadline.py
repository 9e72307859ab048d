"""Deadlines: the whole call is bounded, no wait crosses the deadline, attempts time out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import seawall

from ._helpers import Recorder
from .conftest import status

#: Seconds after which a test whose deadline was not enforced fails instead of
#: hanging. Never a timing assertion: an enforced deadline ends the call with
#: seawall's error long before, however loaded the machine.
HANG_GUARD = 30.0
#: Timers may fire up to the loop's clock resolution early.
CLOCK_SLACK = 0.01


@pytest.fixture
async def hanging(aiohttp_server) -> AsyncIterator[tuple[TestServer, list[int]]]:
    """An upstream that never answers: its handler awaits an Event nobody sets."""
    never = asyncio.Event()
    hits = [0]

    async def handler(_request: web.Request) -> web.Response:
        hits[0] += 1
        await never.wait()
        return web.Response()  # pragma: no cover

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    yield server, hits
    never.set()


def _policy(attempt: float | None, deadline: float | None, **retry: object) -> seawall.Policy:
    return seawall.Policy(
        retry=seawall.RetryPolicy(**retry),  # type: ignore[arg-type]
        timeout=seawall.TimeoutPolicy(attempt=attempt, deadline=deadline),
        breaker=seawall.BreakerPolicy(enabled=False),
        budget=seawall.BudgetPolicy(enabled=False),
    )


async def test_policy_deadline_bounds_the_whole_call(hanging, make_session) -> None:
    """With no attempt timeout, TimeoutPolicy.deadline still ends the call, as DeadlineExceeded."""
    server, hits = hanging
    sw = seawall.Seawall(_policy(None, 0.2), entrypoints=False)
    loop = asyncio.get_running_loop()
    started = loop.time()
    # The upstream never answers: only the deadline ends the call. The outer
    # timeout only keeps a broken deadline from hanging the suite (it would
    # raise TimeoutError, not DeadlineExceededError).
    async with asyncio.timeout(HANG_GUARD), make_session(sw) as session:
        with pytest.raises(seawall.DeadlineExceededError) as info:
            await session.get(server.make_url("/"))
    assert loop.time() - started >= 0.2 - CLOCK_SLACK  # not before the deadline
    assert hits[0] == 1
    assert isinstance(info.value, aiohttp.ClientConnectionError)
    assert isinstance(info.value.__cause__, TimeoutError)
    assert info.value.key.startswith("http://127.0.0.1:")


async def test_deadline_context_manager_bounds_the_call(hanging, make_session) -> None:
    """`with seawall.deadline(s)` bounds calls made inside it, even with no policy deadline."""
    server, hits = hanging
    sw = seawall.Seawall(_policy(None, None), entrypoints=False)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(HANG_GUARD), make_session(sw) as session:
        with seawall.deadline(0.2), pytest.raises(seawall.DeadlineExceededError):
            await session.get(server.make_url("/"))
    assert loop.time() - started >= 0.2 - CLOCK_SLACK
    assert hits[0] == 1


async def test_deadline_bounds_sw_call() -> None:
    """sw.call under a deadline raises DeadlineExceededError when the coroutine overruns."""
    sw = seawall.Seawall(_policy(None, None), entrypoints=False)
    never = asyncio.Event()

    async def slow() -> None:
        await never.wait()

    async with asyncio.timeout(HANG_GUARD):
        with seawall.deadline(0.1), pytest.raises(seawall.DeadlineExceededError):
            await sw.call(slow, key="slow")


def test_nested_deadlines_only_shorten() -> None:
    """An inner deadline later than the outer one does not extend it."""
    with seawall.deadline(1.0) as outer:
        with seawall.deadline(100.0) as inner:
            assert inner == outer
        with seawall.deadline(0.5) as shorter:
            assert shorter is not None
            assert outer is not None
            assert shorter < outer
        with seawall.deadline(None) as same:
            assert same == outer
    assert seawall.deadline.__module__ == "seawall.deadline"


def test_deadline_rejects_non_numbers() -> None:
    """seawall.deadline('5') fails at once, saying what to pass."""
    with pytest.raises(TypeError, match="number of seconds"), seawall.deadline("5"):  # type: ignore[arg-type]
        pass  # pragma: no cover


async def test_a_retry_whose_wait_passes_the_deadline_is_not_attempted(
    upstream, make_session
) -> None:
    """A 503 asking for 30 s under a 10 s deadline is returned, not waited for."""
    up, server = upstream
    up.default = status(503, **{"Retry-After": "30"})
    rec = Recorder()
    sw = seawall.Seawall(_policy(None, 10.0), entrypoints=False, plugins=[rec])
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 503
    assert up.hits == 1
    [call] = rec.of("call")
    assert call.stopped_because == "deadline"


async def test_backoff_past_the_deadline_raises_deadline_exceeded(make_session) -> None:
    """An exception whose next backoff would cross the deadline ends the call at once."""
    sw = seawall.Seawall(
        _policy(None, 3.0, backoff="constant", jitter="none", base_delay=5.0, max_delay=5.0),
        entrypoints=False,
    )
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionResetError("connection reset")

    with pytest.raises(ConnectionResetError) as info:
        await sw.call(down, key="deadline")
    assert calls == 1
    assert "deadline" in info.value.__notes__[-1]


async def test_per_attempt_timeout(hanging, make_session) -> None:
    """Each attempt is cut at TimeoutPolicy.attempt and retried; the call then gives up."""
    server, hits = hanging
    sw = seawall.Seawall(_policy(0.05, 10.0, max_attempts=3), entrypoints=False)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(HANG_GUARD), make_session(sw) as session:
        with pytest.raises(seawall.RetriesExhaustedError) as info:
            await session.get(server.make_url("/"))
    assert hits[0] == 3
    assert isinstance(info.value.__cause__, TimeoutError)
    assert loop.time() - started >= 3 * 0.05 - CLOCK_SLACK  # each attempt got its 50 ms
    assert len(info.value.attempts) == 3
    assert all(record.category == "timeout" for record in info.value.attempts)


async def test_nothing_fits_raises_before_sending(upstream, make_session) -> None:
    """When the deadline has already passed, nothing is sent: DeadlineExceededError."""
    up, server = upstream
    sw = seawall.Seawall(entrypoints=False)
    async with make_session(sw) as session:
        with seawall.deadline(0), pytest.raises(seawall.DeadlineExceededError) as info:
            await session.get(server.make_url("/"))
    assert up.hits == 0
    assert "nothing was sent" in str(info.value)


async def test_cooldown_longer_than_the_deadline_fails_fast(upstream, make_session) -> None:
    """While a key cools down for 30 s after a 429, a call with 5 s left is not sent."""
    up, server = upstream
    up.then(status(429, **{"Retry-After": "30"}))
    sw = seawall.Seawall(_policy(None, None, max_attempts=1), entrypoints=False)
    async with make_session(sw) as session:
        async with session.get(server.make_url("/")) as resp:
            assert resp.status == 429
        with seawall.deadline(5), pytest.raises(seawall.DeadlineExceededError) as info:
            await session.get(server.make_url("/"))
    assert up.hits == 1
    assert "rate-limited" in str(info.value)
