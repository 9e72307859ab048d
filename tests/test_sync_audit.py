"""The sync forms' audit (fix/sync): hostile uses of ``sw.call_sync``, decorated ``def``s
and the sync block form, with real threads started together and an injected clock."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiohttp.test_utils import TestServer

import seawall
from tests._helpers import Clock
from tests.conftest import Upstream, status

from .test_sync_wait import Probe, _async_up, _down, _in_thread, _sw, _up


def _open_then_due(sw: seawall.Seawall, clock: Clock, key: str) -> None:
    with pytest.raises(ConnectionError):
        sw.call_sync(_down, key=key)
    assert sw.health()["keys"][key]["state"] == "open"
    clock.advance(11.0)  # past the recovery timeout (jittered down, never up)


def _hung_probe(sw: seawall.Seawall, clock: Clock) -> tuple[Probe, threading.Thread, list[object]]:
    """Key ``"k"`` opened and its probe due, then a probe that hangs (a socket read without
    a timeout, until the test answers it) started in a thread: the probe, its thread, and
    what it returned or raised."""
    _open_then_due(sw, clock, "k")
    hang = Probe("late")
    thread, ended = _in_thread(lambda: sw.call_sync(hang, key="k"))
    return hang, thread, ended


def test_a_hung_sync_probe_gives_its_turn_up_after_the_attempt_limit() -> None:
    """A plain function that hangs while it is the half-open breaker's probe (a socket read
    without a timeout) held the key's only probe for as long as it hung: every caller, the
    event loop's included, was refused though the upstream had recovered. A thread cannot be
    cut short, but its probe's turn ends at the policy's attempt limit, as an async probe's does."""
    clock = Clock()
    sw = _sw(clock, hold=0.0, attempt=5.0)
    hang, thread, ended = _hung_probe(sw, clock)
    try:
        assert hang.started.wait(30)
        with pytest.raises(seawall.CircuitOpenError):  # the probe is out, within its limit
            sw.call_sync(_up, key="k")
        clock.advance(5.0)  # the probe's attempt limit has passed
        assert asyncio.run(sw.call(_async_up, key="k")) == "up"  # a new probe: closes it
        assert sw.health()["keys"]["k"]["state"] == "closed"
    finally:
        hang.answer()
        thread.join(30)
    assert ended == ["late"]  # the hung call still returns what it got
    books = sw.health()["keys"]["k"]
    assert books["state"] == "closed"  # its late verdict is stale news
    assert books["transitions"] == {"closed->open": 1, "open->half_open": 1, "half_open->closed": 1}


def test_a_hung_sync_probe_without_an_attempt_limit_keeps_its_turn() -> None:
    """``TimeoutPolicy(attempt=None)`` says an attempt may take as long as it takes: the probe
    keeps its turn (as an async one without a limit does) until it ends."""
    clock = Clock()
    sw = _sw(clock, hold=0.0, attempt=None)
    hang, thread, ended = _hung_probe(sw, clock)
    try:
        assert hang.started.wait(30)
        clock.advance(3600.0)
        with pytest.raises(seawall.CircuitOpenError):
            sw.call_sync(_up, key="k")
    finally:
        hang.answer()
        thread.join(30)
    assert ended == ["late"]
    assert sw.health()["keys"]["k"]["state"] == "closed"  # its success closed it


def test_a_hung_sync_probes_late_failure_after_its_limit_is_stale_news() -> None:
    """The hung probe's turn ran out and a new probe closed the breaker; when the hung call
    at last fails, its failure is about the upstream as it was before the recovery. It
    counted as a failed call of the closed breaker and, with ``failure_threshold=1``,
    opened it again though the upstream had recovered (fix/asyncprobe)."""
    clock = Clock()
    sw = _sw(clock, hold=0.0, attempt=5.0)
    hang, thread, ended = _hung_probe(sw, clock)
    try:
        assert hang.started.wait(30)
        clock.advance(5.0)  # the probe's attempt limit has passed
        assert sw.call_sync(_up, key="k") == "up"  # a new probe: closes it
    finally:
        hang.answer(fail=True)
        thread.join(30)
    assert len(ended) == 1
    assert isinstance(ended[0], ConnectionError)  # still raised
    books = sw.health()["keys"]["k"]
    assert books["state"] == "closed"
    assert books["transitions"] == {"closed->open": 1, "open->half_open": 1, "half_open->closed": 1}
    assert sw.call_sync(_up, key="k") == "up"


# --- Retry-After on an exception that carries its response ------------------------------


def _get_or_raise(url: str) -> str:
    """A blocking GET with httpx that raises for an error status (``HTTPStatusError``)."""
    import httpx

    with httpx.Client(timeout=30) as client:
        resp = client.get(url)
        resp.raise_for_status()
        return resp.text


def _waiting_sw(clock: Clock) -> seawall.Seawall:
    policy = seawall.Policy(retry=seawall.RetryPolicy(max_attempts=3))
    return seawall.Seawall(policy, entrypoints=False, clock=clock, sleep=clock.sleep)


async def test_a_plain_functions_429_waits_its_retry_after(
    upstream: tuple[Upstream, TestServer],
) -> None:
    """``raise_for_status()`` on a 429 with ``Retry-After: 7``, inside a protected ``def``: the
    retry waits the 7 s the server asked for. It was retried after the backoff (~0.1 s),
    inside the server's pause, and the key's cooldown started without the server's wait."""
    seawall.testing.set_testing(False)  # waits are slept (on the test's clock)
    up, server = upstream
    up.then(status(429, **{"Retry-After": "7"}))
    clock = Clock()
    sw = _waiting_sw(clock)
    url = str(server.make_url("/limited"))
    assert await asyncio.to_thread(sw.call_sync, _get_or_raise, url, key="limited") == "ok"
    assert up.hits == 2
    assert sum(clock.slept) >= 7.0, clock.slept


async def test_a_plain_functions_retry_after_over_the_maximum_stops_the_retries(
    upstream: tuple[Upstream, TestServer],
) -> None:
    """A wait over ``retry_after_max`` (60 s) stops retrying, as for the adapters' responses:
    one request, the 503's error raised with its history. It was sent three times."""
    up, server = upstream
    up.then(*[status(503, **{"Retry-After": "3600"})] * 3)
    clock = Clock()
    sw = _waiting_sw(clock)
    url = str(server.make_url("/busy"))
    with pytest.raises(Exception, match="503") as caught:
        await asyncio.to_thread(sw.call_sync, _get_or_raise, url, key="busy")
    assert up.hits == 1
    assert any("server" in note and "wait" in note for note in caught.value.__notes__), (
        caught.value.__notes__
    )


async def test_an_async_functions_aiohttp_error_waits_its_retry_after(
    upstream: tuple[Upstream, TestServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for ``await sw.call``: aiohttp's ``raise_for_status()`` error keeps the headers."""
    import aiohttp

    up, server = upstream
    up.then(status(429, **{"Retry-After": "7"}))
    clock = Clock()
    sw = _waiting_sw(clock)
    url = server.make_url("/limited")

    async def waits(seconds: float) -> None:  # the loop's waits, on the test's clock
        clock.sleep(seconds)

    monkeypatch.setattr(seawall._testmode, "sleep", waits)

    async def get() -> str:
        async with (
            aiohttp.ClientSession(raise_for_status=True) as session,
            session.get(url) as resp,
        ):
            return await resp.text()

    assert await sw.call(get, key="limited") == "ok"
    assert up.hits == 2
    assert sum(clock.slept) >= 7.0, clock.slept


def test_probes_given_back_while_half_open_are_not_kept() -> None:
    """Probes lent to threads and given back without a verdict (a def returning a coroutine is
    a misuse, no verdict) while the breaker stays half-open: the breaker keeps none of them."""
    clock = Clock()
    sw = _sw(clock, hold=0.0, attempt=5.0)
    _open_then_due(sw, clock, "k")

    async def fetch() -> str:
        return "x"

    for _ in range(50):
        with pytest.raises(TypeError, match="awaitable"):
            sw.call_sync(lambda: fetch(), key="k")
    breaker = sw.state_for("k", sw.policy_for_key("k")).breaker
    assert breaker.state.value == "half_open"
    assert len(breaker._lent or ()) <= 1
    assert sw.call_sync(_up, key="k") == "up"  # the probes' turns were given back
    assert breaker._lent is None  # closed: the spell is over
