"""The sync forms' audit (fix/sync): hostile uses of ``sw.call_sync``, decorated ``def``s
and the sync block form, with real threads started together and an injected clock."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

import seawall
from tests._helpers import Clock


def _breaker_sw(clock: Clock, *, attempt: float | None = 5.0, hold: float = 0.0) -> seawall.Seawall:
    """One attempt a call, a breaker that opens on one failed call and probes after 10 s."""
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(failure_threshold=1, recovery_timeout=10.0, hold=hold),
        timeout=seawall.TimeoutPolicy(attempt=attempt, deadline=None),
    )
    return seawall.Seawall(policy, entrypoints=False, clock=clock, sleep=clock.sleep)


def _down() -> str:
    raise ConnectionError("refused")


def _up() -> str:
    return "up"


async def _async_up() -> str:
    return "up"


def _in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[object]]:
    """``target`` in a thread of its own; what it returned or raised, once it has ended."""
    ended: list[object] = []

    def run() -> None:
        try:
            ended.append(target())
        except BaseException as exc:
            ended.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, ended


def _open_then_due(sw: seawall.Seawall, clock: Clock, key: str) -> None:
    with pytest.raises(ConnectionError):
        sw.call_sync(_down, key=key)
    assert sw.health()["keys"][key]["state"] == "open"
    clock.advance(11.0)  # past the recovery timeout (jittered down, never up)


def test_a_hung_sync_probe_gives_its_turn_up_after_the_attempt_limit() -> None:
    """A plain function that hangs while it is the half-open breaker's probe (a socket read
    without a timeout) held the key's only probe for as long as it hung: every caller, the
    event loop's included, was refused though the upstream had recovered. A thread cannot be
    cut short, but its probe's turn ends at the policy's attempt limit, as an async probe's does."""
    clock = Clock()
    sw = _breaker_sw(clock)
    _open_then_due(sw, clock, "k")
    started, release = threading.Event(), threading.Event()

    def hang() -> str:
        started.set()
        release.wait(30)
        return "late"

    thread, ended = _in_thread(lambda: sw.call_sync(hang, key="k"))
    try:
        assert started.wait(30)
        with pytest.raises(seawall.CircuitOpenError):  # the probe is out, within its limit
            sw.call_sync(_up, key="k")
        clock.advance(5.0)  # the probe's attempt limit has passed
        assert asyncio.run(sw.call(_async_up, key="k")) == "up"  # a new probe: closes it
        assert sw.health()["keys"]["k"]["state"] == "closed"
    finally:
        release.set()
        thread.join(30)
    assert ended == ["late"]  # the hung call still returns what it got
    books = sw.health()["keys"]["k"]
    assert books["state"] == "closed"  # its late verdict is stale news
    assert books["transitions"] == {"closed->open": 1, "open->half_open": 1, "half_open->closed": 1}


def test_a_hung_sync_probe_without_an_attempt_limit_keeps_its_turn() -> None:
    """``TimeoutPolicy(attempt=None)`` says an attempt may take as long as it takes: the probe
    keeps its turn (as an async one without a limit does) until it ends."""
    clock = Clock()
    sw = _breaker_sw(clock, attempt=None)
    _open_then_due(sw, clock, "k")
    started, release = threading.Event(), threading.Event()

    def hang() -> str:
        started.set()
        release.wait(30)
        return "late"

    thread, ended = _in_thread(lambda: sw.call_sync(hang, key="k"))
    try:
        assert started.wait(30)
        clock.advance(3600.0)
        with pytest.raises(seawall.CircuitOpenError):
            sw.call_sync(_up, key="k")
    finally:
        release.set()
        thread.join(30)
    assert ended == ["late"]
    assert sw.health()["keys"]["k"]["state"] == "closed"  # its success closed it
