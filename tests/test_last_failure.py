"""``sw.health()``: each key's last failure time, a Unix time read through the injected clock."""

from __future__ import annotations

import time

import pytest

import seawall
from seawall.metrics import health_report
from seawall.state import KeyState

from .conftest import status


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def _sw(clock: Clock) -> seawall.Seawall:
    return seawall.Seawall(
        seawall.Policy(
            retry=seawall.RetryPolicy(max_attempts=1),
            breaker=seawall.BreakerPolicy(failure_threshold=100),
        ),
        clock=clock,
        entrypoints=False,
    )


async def test_last_failure_is_when_the_upstream_last_failed(upstream, make_session) -> None:
    """None until a counted failure; then that moment, however old, as a Unix time."""
    up, server = upstream
    clock = Clock()
    sw = _sw(clock)
    session = make_session(sw)
    key = f"http://127.0.0.1:{server.port}"
    up.then(status(404), status(503))
    async with session.get(server.make_url("/")) as resp:
        assert resp.status == 404
    assert sw.health().by_key[key].last_failure is None  # a 404: the upstream answered

    clock.now = 5100.0
    async with session.get(server.make_url("/")) as resp:
        assert resp.status == 503
    clock.now = 5160.0  # 60 s later on the clock seawall reads
    async with session.get(server.make_url("/")) as resp:
        assert resp.status == 200  # a success does not clear it
    before = time.time()
    report = sw.health()
    after = time.time()
    last = report.by_key[key].last_failure
    assert last is not None
    assert before - 60.0 <= last <= after - 60.0
    assert report["keys"][key]["last_failure"] == last
    assert report.to_dict()["keys"][key]["last_failure"] == last


async def test_a_caller_error_is_not_the_upstreams_failure() -> None:
    """A bug in the caller's code never sets the key's last failure."""
    sw = _sw(Clock())

    async def buggy() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        await sw.using(key="k").call(buggy)
    assert sw.health().by_key["k"].last_failure is None


def test_placed_on_the_wall_clock_exactly() -> None:
    """The conversion, with both clocks injected."""
    state = KeyState("k", seawall.Policy(), lambda: 0.0)
    state.stats.last_failure = 40.0
    report = health_report(
        {"k": state},
        started=0.0,
        faults={},
        escalation={},
        clock=lambda: 100.0,
        wall_clock=lambda: 1_700_000_000.0,
    )
    assert report.by_key["k"].last_failure == 1_700_000_000.0 - 60.0
