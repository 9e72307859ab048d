"""The circuit breaker: unit tests on an injected clock, then through the middleware."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiohttp import web

import seawall
from seawall.breaker import Breaker, BreakerState, Permit, Transition

from ._helpers import Clock, Recorder
from .conftest import status
from .test_breaker_hold import _until


def _breaker(clock: Clock, **settings: object) -> tuple[Breaker, list[Transition]]:
    moves: list[Transition] = []
    policy = seawall.BreakerPolicy(**settings)  # type: ignore[arg-type]
    return Breaker("k", policy, clock, moves.append, rng=random.Random(7)), moves


def _fail(breaker: Breaker, times: int = 1) -> None:
    """``times`` failed attempts (the failure rate and half-open probes count these)."""
    for _ in range(times):
        permit = breaker.admit()
        assert permit is not None
        breaker.record(permit, failure=True)


def _failed_call(breaker: Breaker, times: int = 1, attempts: int = 1) -> None:
    """``times`` calls that give up after ``attempts`` failed attempts each, as the engine does."""
    for _ in range(times):
        _fail(breaker, attempts)
        breaker.call_failed()


def _succeed(breaker: Breaker, times: int = 1) -> None:
    for _ in range(times):
        permit = breaker.admit()
        assert permit is not None
        breaker.record(permit, failure=False)


#: The moves of a breaker that opened, probed and closed again.
RECOVERED = [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def _half_open(clock: Clock, **settings: object) -> tuple[Breaker, list[Transition], Permit]:
    """Opened by one failed call, then half-open 1 s later (its recovery timeout, unless
    ``settings`` say otherwise): its probe taken."""
    options: dict[str, object] = {"failure_threshold": 1, "recovery_timeout": 1.0}
    breaker, moves = _breaker(clock, **(options | settings))
    _failed_call(breaker)
    clock.advance(1.0)
    probe = breaker.admit()
    assert probe is not None
    return breaker, moves, probe


def _two_probes(
    clock: Clock, **settings: object
) -> tuple[Breaker, list[Transition], Permit, Permit]:
    """Opened by one failed call, then half-open with both its probe slots taken (two
    successes close it, unless ``settings`` say otherwise): a third call is rejected, not
    queued."""
    options: dict[str, object] = {"half_open_max_calls": 2, "success_threshold": 2}
    breaker, moves, first = _half_open(clock, **(options | settings))
    second = breaker.admit()
    assert second is not None
    assert breaker.admit() is None  # rejected, not queued
    return breaker, moves, first, second


# --- unit ----------------------------------------------------------------------------


def test_consecutive_failed_calls_trip() -> None:
    """failure_threshold consecutive failed calls open the breaker; a success in between resets."""
    clock = Clock()
    breaker, moves = _breaker(clock, failure_threshold=3)
    _failed_call(breaker, 2, attempts=3)
    _succeed(breaker)
    _failed_call(breaker, 2, attempts=3)
    assert breaker.state is BreakerState.CLOSED  # 6 failed attempts in a row, but 2 calls
    assert breaker.consecutive_failures == 2
    _failed_call(breaker, attempts=3)
    assert breaker.state is BreakerState.OPEN
    assert [(m.old, m.new) for m in moves] == [(BreakerState.CLOSED, BreakerState.OPEN)]
    assert moves[0].consecutive_failures == 3


def test_failed_attempts_alone_do_not_trip_the_consecutive_rule() -> None:
    """Failed attempts without a failed call never reach failure_threshold; only the rate trips."""
    breaker, moves = _breaker(Clock(), failure_threshold=2, window=50, minimum_calls=50)
    _fail(breaker, 49)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    assert moves == []


def test_a_successful_attempt_resets_the_failed_calls() -> None:
    """A success, even one attempt inside a call that had failed attempts, resets the count."""
    breaker, _ = _breaker(Clock(), failure_threshold=3)
    _failed_call(breaker, 2, attempts=2)
    _fail(breaker, 2)
    _succeed(breaker)  # the third call succeeded on its third attempt
    assert breaker.consecutive_failures == 0
    _failed_call(breaker, 2, attempts=2)
    assert breaker.state is BreakerState.CLOSED
    _failed_call(breaker)
    assert breaker.state is BreakerState.OPEN


def test_call_failed_does_nothing_while_open() -> None:
    """An open breaker ignores failed calls: no count, no new transition, same recovery time."""
    clock = Clock()
    breaker, moves = _breaker(clock, failure_threshold=1, recovery_timeout=10.0)
    _failed_call(breaker)
    assert breaker.state is BreakerState.OPEN
    wait = breaker.retry_after()
    for _ in range(3):  # calls admitted before the trip, giving up now
        breaker.call_failed()
    assert breaker.state is BreakerState.OPEN
    assert breaker.consecutive_failures == 1
    assert breaker.retry_after() == wait
    assert len(moves) == 1


def test_call_failed_does_nothing_while_half_open() -> None:
    """Half-open counts probes only: a failed call does not reopen it, a good probe closes it."""
    clock = Clock()
    breaker, moves, probe = _half_open(clock)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.call_failed()  # a call admitted while closed gives up now
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.consecutive_failures == 1
    breaker.record(probe, failure=False)
    assert breaker.state is BreakerState.CLOSED
    assert [m.new for m in moves] == RECOVERED


def test_failure_rate_trips_after_minimum_calls() -> None:
    """Half the last `window` calls failing trips it, but not before minimum_calls."""
    clock = Clock()
    breaker, _ = _breaker(
        clock, failure_threshold=100, window=10, minimum_calls=10, failure_rate=0.5
    )
    for _ in range(4):
        _fail(breaker)
        _succeed(breaker)
    assert breaker.state is BreakerState.CLOSED  # 8 calls: below minimum_calls
    _succeed(breaker)
    _fail(breaker)
    assert breaker.state is BreakerState.OPEN
    assert breaker.failure_rate == pytest.approx(0.5)


def test_open_rejects_until_the_jittered_recovery_timeout() -> None:
    """Open admits nothing until recovery_timeout (jittered down by at most 20 %) has passed."""
    clock = Clock()
    breaker, _ = _breaker(clock, failure_threshold=1, recovery_timeout=10.0)
    _failed_call(breaker)
    wait = breaker.retry_after()
    assert 8.0 <= wait <= 10.0
    assert breaker.admit() is None
    clock.advance(wait - 0.01)
    assert breaker.admit() is None
    clock.advance(0.02)
    assert breaker.admit() is not None
    assert breaker.state is BreakerState.HALF_OPEN


def test_half_open_limits_probes_and_closes_after_success_threshold() -> None:
    """Half-open admits half_open_max_calls at a time; success_threshold successes close it."""
    clock = Clock()
    breaker, moves, first, second = _two_probes(clock)
    breaker.record(first, failure=False)
    assert breaker.state is BreakerState.HALF_OPEN
    third = breaker.admit()  # a probe slot came free
    assert third is not None
    breaker.record(second, failure=False)
    assert breaker.state is BreakerState.CLOSED
    assert [m.new for m in moves] == RECOVERED


def test_one_failed_probe_reopens() -> None:
    """A failed probe opens the breaker again for a fresh recovery period."""
    clock = Clock()
    breaker, _ = _breaker(clock, failure_threshold=1, recovery_timeout=5.0)
    _failed_call(breaker)
    clock.advance(5.0)
    _fail(breaker)
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after() >= 4.0


def test_released_probe_gives_its_permit_back() -> None:
    """A probe released without a verdict (cancelled) frees its slot."""
    clock = Clock()
    breaker, _, probe = _half_open(clock)
    assert breaker.admit() is None
    breaker.release(probe)
    assert breaker.admit() is not None


def test_disabled_breaker_never_opens() -> None:
    """enabled=False admits everything and counts no failed call, whatever happens."""
    breaker, moves = _breaker(Clock(), failure_threshold=1, minimum_calls=1, enabled=False)
    _failed_call(breaker, 10, attempts=2)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    assert moves == []


# --- through the middleware ------------------------------------------------------------------


def _sw(clock: Clock, recorder: Recorder | None = None, **breaker: object) -> seawall.Seawall:
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(**breaker),  # type: ignore[arg-type]
        budget=seawall.BudgetPolicy(enabled=False),
        timeout=seawall.TimeoutPolicy(attempt=None, deadline=None),
    )
    return seawall.Seawall(
        policy, entrypoints=False, clock=clock, plugins=[recorder] if recorder else []
    )


async def test_open_breaker_rejects_without_calling_upstream(upstream, make_session) -> None:
    """After the trip, requests fail with CircuitOpenError(key, retry_after) and hit nothing."""
    up, server = upstream
    up.default = status(503)
    clock = Clock()
    rec = Recorder()
    sw = _sw(clock, rec, failure_threshold=3, recovery_timeout=30.0)
    async with make_session(sw) as session:
        for _ in range(3):
            async with session.get(server.make_url("/")) as resp:
                assert resp.status == 503
        with pytest.raises(seawall.CircuitOpenError) as info:
            await session.get(server.make_url("/"))
    assert up.hits == 3
    assert info.value.key == f"http://127.0.0.1:{server.port}"
    assert 24.0 <= info.value.retry_after <= 30.0
    assert info.value.key in str(info.value)
    assert [e.reason for e in rec.of("rejected")] == ["breaker"]
    assert sw.health()["keys"][info.value.key]["state"] == "open"
    assert sw.health()["status"] == "unhealthy"


async def test_recovery_through_half_open(upstream, make_session) -> None:
    """After recovery_timeout a probe goes through; its success closes the breaker."""
    up, server = upstream
    up.then(status(503), status(503))
    clock = Clock()
    sw = _sw(clock, failure_threshold=2, recovery_timeout=10.0)
    async with make_session(sw) as session:
        for _ in range(2):
            async with session.get(server.make_url("/")):
                pass
        with pytest.raises(seawall.CircuitOpenError):
            await session.get(server.make_url("/"))
        clock.advance(10.0)
        async with session.get(server.make_url("/")) as resp:
            assert resp.status == 200
        [state] = sw.health()["keys"].values()
        assert state["state"] == "closed"
        assert state["transitions"] == {
            "closed->open": 1,
            "open->half_open": 1,
            "half_open->closed": 1,
        }
    assert up.hits == 3


async def test_failure_rate_trip_through_middleware(upstream, make_session) -> None:
    """Alternating 503/200 trips a breaker configured for a 50 % failure rate."""
    up, server = upstream
    up.then(*[status(503) if n % 2 else status(200) for n in range(10)])
    sw = _sw(Clock(), failure_threshold=100, window=10, minimum_calls=10, failure_rate=0.5)
    async with make_session(sw) as session:
        for _ in range(10):
            async with session.get(server.make_url("/")):
                pass
        with pytest.raises(seawall.CircuitOpenError):
            await session.get(server.make_url("/"))
    assert up.hits == 10


def _sw_with_retries(
    clock: Clock, recorder: Recorder | None = None, attempts: int = 3, **breaker: object
) -> seawall.Seawall:
    """Retries, and the default breaker (five failed calls in a row) and budget unless told."""
    return seawall.Seawall(
        seawall.Policy(
            retry=seawall.RetryPolicy(max_attempts=attempts),
            breaker=seawall.BreakerPolicy(**breaker),  # type: ignore[arg-type]
        ),
        entrypoints=False,
        clock=clock,
        plugins=[recorder] if recorder else [],
    )


def _longest_failure_run(recorder: Recorder) -> int:
    longest = run = 0
    for event in recorder.of("attempt"):
        run = run + 1 if event.category == "server" else 0
        longest = max(longest, run)
    return longest


async def test_random_errors_with_retries_never_trip_the_default_breaker(
    upstream, make_session
) -> None:
    """300 calls against 30 % random 500s, four attempts each, leave the default breaker closed."""
    up, server = upstream
    rng = random.Random(12)  # this seed gives runs of 8 failed attempts and 2 failed calls

    async def flaky(_request: web.Request) -> web.Response:
        if rng.random() < 0.3:
            return web.Response(status=500, text="random failure")
        return web.Response(text="ok")

    up.default = flaky
    rec = Recorder()
    sw = _sw_with_retries(Clock(), rec, attempts=4)
    statuses: list[int] = []
    async with make_session(sw) as session:
        for _ in range(300):
            async with session.get(server.make_url("/")) as resp:
                statuses.append(resp.status)
    assert len(rec.of("attempt")) == up.hits
    # Counting attempts, five failures in a row would have opened the breaker here.
    assert _longest_failure_run(rec) >= seawall.BreakerPolicy().failure_threshold
    assert rec.of("breaker") == []
    assert rec.of("rejected") == []
    [state] = sw.health()["keys"].values()
    assert state["state"] == "closed"
    assert statuses.count(200) >= 297  # issue 6's target: 99 % success at 30 % errors


async def test_five_calls_failing_after_their_retries_trip_the_default_breaker(
    upstream, make_session
) -> None:
    """Five calls giving up after three 500s each open the breaker; the sixth fails fast."""
    up, server = upstream
    up.default = status(500)
    rec = Recorder()
    sw = _sw_with_retries(Clock(), rec)  # 15 attempts: below minimum_calls, the rate cannot trip
    async with make_session(sw) as session:
        for n in range(1, 6):
            async with session.get(server.make_url("/")) as resp:
                assert resp.status == 500
            assert up.hits == 3 * n  # every call used all its attempts: no trip mid-call
            [state] = sw.health()["keys"].values()
            assert state["consecutive_failures"] == n
            assert state["state"] == ("open" if n == 5 else "closed")
        with pytest.raises(seawall.CircuitOpenError):
            await session.get(server.make_url("/"))
    assert up.hits == 15
    (move,) = rec.of("breaker")
    assert (move.old, move.new, move.consecutive_failures) == ("closed", "open", 5)


async def test_a_successful_call_between_failed_calls_resets_the_count(
    upstream, make_session
) -> None:
    """Four failed calls, one that succeeds on its third attempt, four more: still closed."""
    up, server = upstream
    fail = status(500)
    up.then(*[fail] * 12, fail, fail, status(200))
    up.default = fail
    sw = _sw_with_retries(Clock(), minimum_calls=100)  # only the consecutive rule can trip
    async with make_session(sw) as session:
        for expected in [500] * 4 + [200] + [500] * 4:
            async with session.get(server.make_url("/")) as resp:
                assert resp.status == expected
        [state] = sw.health()["keys"].values()
        assert (state["state"], state["consecutive_failures"]) == ("closed", 4)
        async with session.get(server.make_url("/")) as resp:
            assert resp.status == 500
        with pytest.raises(seawall.CircuitOpenError):
            await session.get(server.make_url("/"))
    assert up.hits == 12 + 3 + 12 + 3


async def _half_open_gate(aiohttp_server, clock: Clock, session, probes: int = 1):  # type: ignore[no-untyped-def]
    """Trip the breaker and move the clock to half-open; `arrived` fires at `probes` probes."""
    gate, arrived = asyncio.Event(), asyncio.Event()
    hits = [0]
    fail_first = [True]

    async def handler(_request: web.Request) -> web.Response:
        hits[0] += 1
        if fail_first[0]:
            fail_first[0] = False
            return web.Response(status=503)
        if hits[0] - 1 >= probes:
            arrived.set()
        await gate.wait()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    async with session.get(server.make_url("/")) as resp:
        assert resp.status == 503
    clock.advance(60.0)
    return server, gate, arrived, hits


async def test_half_open_admits_at_most_max_probes(aiohttp_server, make_session) -> None:
    """With half_open_max_calls=2, two concurrent probes go through and a third fails fast."""
    clock = Clock()
    sw = _sw(clock, failure_threshold=1, recovery_timeout=30.0, half_open_max_calls=2)
    async with make_session(sw) as session:
        server, gate, arrived, hits = await _half_open_gate(aiohttp_server, clock, session, 2)
        url = server.make_url("/")
        probes = [asyncio.create_task(session.get(url)) for _ in range(2)]
        async with asyncio.timeout(5):
            await arrived.wait()  # both probes reached the upstream
        with pytest.raises(seawall.CircuitOpenError) as info:
            await session.get(url)
        assert info.value.retry_after == 0.0
        gate.set()
        async with asyncio.timeout(5):
            for resp in await asyncio.gather(*probes):
                assert resp.status == 200
                resp.release()
    assert hits[0] == 3
    [state] = sw.health()["keys"].values()
    assert state["state"] == "closed"


async def test_cancelled_probe_returns_its_permit(aiohttp_server, make_session) -> None:
    """Cancelling the only half-open probe lets the next request probe instead of failing."""
    clock = Clock()
    sw = _sw(clock, failure_threshold=1, recovery_timeout=30.0)
    async with make_session(sw) as session:
        server, gate, arrived, hits = await _half_open_gate(aiohttp_server, clock, session)
        url = server.make_url("/")
        probe = asyncio.create_task(session.get(url))
        async with asyncio.timeout(5):
            await arrived.wait()
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        gate.set()
        async with asyncio.timeout(5), session.get(url) as resp:
            assert resp.status == 200
    assert hits[0] == 3


@pytest.mark.parametrize("code", [400, 404, 409, 422, 429])
async def test_client_errors_and_429_do_not_trip(upstream, make_session, code) -> None:
    """Twenty 4xx (or 429) answers in a row leave the breaker closed."""
    up, server = upstream
    up.default = status(code)
    sw = _sw(Clock(), failure_threshold=2, failure_rate=0.1, window=10, minimum_calls=5)
    async with make_session(sw) as session:
        for _ in range(20):
            async with session.get(server.make_url("/")) as resp:
                assert resp.status == code
    assert up.hits == 20
    [state] = sw.health()["keys"].values()
    assert state["state"] == "closed"
    assert state["consecutive_failures"] == 0


def test_a_probe_meeting_429_leaves_the_breaker_half_open() -> None:
    """A 429 says nothing about health: the probe's permit is released, no verdict."""
    clock = Clock()
    breaker, _, probe = _half_open(clock)
    breaker.release(probe)  # what the engine does for RATE_LIMIT
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.admit() is not None


async def test_health_is_degraded_when_some_breakers_are_open() -> None:
    """health(): healthy with all closed, degraded with some open, unhealthy with all open."""
    sw = _sw(Clock(), failure_threshold=1)

    async def down() -> None:
        raise ConnectionResetError("connection reset")

    async def fine() -> str:
        return "ok"

    assert sw.health()["status"] == "healthy"
    assert await sw.call(fine, key="a") == "ok"
    with pytest.raises(ConnectionResetError):
        await sw.call(down, key="b")
    report = sw.health()
    assert report["status"] == "degraded"
    assert report["keys"]["a"]["state"] == "closed"
    assert report["keys"]["b"]["state"] == "open"


async def test_a_held_request_whose_paced_turn_comes_past_its_deadline_says_so(
    aiohttp_server, make_session
) -> None:
    """Through the aiohttp middleware against a real server: two requests held behind the
    probe at a slow key, released by its success. The first goes at once; the second's
    turn, a gap (4.5 s) on, comes after its 2.3 s deadline: ``DeadlineExceededError``
    saying so, where it got ``CircuitOpenError`` (the breaker had closed), and nothing
    reaches the upstream for it. Other callers are unharmed: a request after the ramp
    ends goes."""
    clock = Clock()
    gap = 1.0 / ((1.0 + seawall.breaker.DRAIN_SHARE) * 0.2)
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(failure_threshold=1, recovery_timeout=30.0, hold=5.0),
        budget=seawall.BudgetPolicy(enabled=False),
        timeout=seawall.TimeoutPolicy(attempt=None, deadline=gap / 2),
    )
    sw = seawall.Seawall(policy, entrypoints=False, clock=clock)
    async with make_session(sw) as session:
        server, gate, arrived, hits = await _half_open_gate(aiohttp_server, clock, session)
        url = server.make_url("/")
        breaker = sw.registry.view[next(iter(sw.health()["keys"]))].breaker
        breaker.rate = 0.2  # requests a second, as measured before it opened
        probe = asyncio.create_task(session.get(url))
        async with asyncio.timeout(5):
            await arrived.wait()
        first = asyncio.create_task(session.get(url))
        second = asyncio.create_task(session.get(url))
        await _until(lambda: breaker.held == 2)  # (held in the middleware: no I/O first)
        gate.set()
        async with asyncio.timeout(5):
            for resp in (await probe, await first):
                assert resp.status == 200
                resp.release()
            with pytest.raises(seawall.DeadlineExceededError) as caught:
                await second
        assert "the breaker recovered while the call was held" in str(caught.value)
        assert "paced turn came after its deadline; nothing was sent" in str(caught.value)
        assert hits[0] == 3  # the trip, the probe, the first: none for the second
        [state] = sw.health()["keys"].values()
        assert state["state"] == "closed"
        assert state["rejections"] == {"deadline": 1}
        clock.advance(2 * gap)  # the ramp over
        async with asyncio.timeout(5), session.get(url) as resp:
            assert resp.status == 200
