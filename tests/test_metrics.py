"""Built-in metrics: counters, latency histogram and ``sw.health()`` after scripted scenarios."""

from __future__ import annotations

import pytest

import seawall
from seawall.metrics import LATENCY_BUCKETS, KeyStats, LatencyHistogram
from seawall.policy import BreakerPolicy, BudgetPolicy, Policy, RetryPolicy
from seawall.stats import totals

from .conftest import status


async def test_counters_after_a_scripted_scenario(upstream, make_session):
    """Requests, attempts, retries, successes, failures and rejections add up per key."""
    up, server = upstream
    up.then(status(503), status(200), status(404), status(500), status(500))
    sw = seawall.Seawall(
        Policy(
            retry=RetryPolicy(max_attempts=2),
            # probe_share=0: one probe per recovery_timeout, so the call after the opening
            # is refused at once however slowly a loaded host runs the calls before it.
            breaker=BreakerPolicy(failure_threshold=1, probe_share=0),
        ),
        entrypoints=False,
    )
    async with make_session(sw) as session:
        for expected in (200, 404, 500):  # 503->200 ; 404 ; 500,500 -> the failed call opens it
            async with session.get(server.make_url("/")) as resp:
                assert resp.status == expected
        with pytest.raises(seawall.CircuitOpenError):
            await session.get(server.make_url("/"))
    report = sw.health()
    (key,) = report["keys"]
    detail = report["keys"][key]
    assert detail["requests"] == 4
    assert detail["attempts"] == 5 == up.hits
    assert detail["retries"] == 2
    assert detail["successes"] == 1
    assert detail["failures"] == {"client": 1, "server": 1}
    assert detail["rejections"] == {"breaker": 1}
    assert detail["transitions"] == {"closed->open": 1}
    assert detail["state"] == "open"
    assert detail["success_rate"] == pytest.approx(1 / 4)
    assert report["status"] == "unhealthy"
    assert report["breakers"] == {"closed": 0, "open": 1, "half_open": 0}
    assert report["requests"] == 4
    assert report["successes"] == 1
    for name in ("average_latency", "p50_latency", "p95_latency", "p99_latency"):
        assert report[name] is not None
        assert 0 <= report[name] < 5
    assert report["uptime"] >= 0


async def test_health_is_degraded_when_some_breakers_are_open():
    """One open breaker among closed ones makes the status degraded; none open is healthy."""
    sw = seawall.Seawall(
        Policy(retry=RetryPolicy(max_attempts=1), breaker=BreakerPolicy(failure_threshold=1)),
        entrypoints=False,
    )
    assert sw.health()["status"] == "healthy"

    async def ok() -> str:
        return "ok"

    async def down() -> None:
        raise ConnectionRefusedError("refused")

    assert await sw.call(ok, key="good") == "ok"
    assert sw.health()["status"] == "healthy"
    with pytest.raises(ConnectionRefusedError):
        await sw.call(down, key="bad")
    report = sw.health()
    assert report["status"] == "degraded"
    assert report["keys"]["bad"]["failures"] == {"network": 1}
    assert report["keys"]["good"]["success_rate"] == 1.0


async def test_reset_metrics_zeroes_counters_but_keeps_breakers():
    """reset_metrics clears counters and latency; the breaker stays open."""
    sw = seawall.Seawall(
        Policy(retry=RetryPolicy(max_attempts=1), breaker=BreakerPolicy(failure_threshold=1)),
        entrypoints=False,
    )

    async def down() -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(ConnectionRefusedError):
        await sw.call(down, key="bad")
    sw.reset_metrics()
    detail = sw.health()["keys"]["bad"]
    assert detail["requests"] == 0
    assert detail["failures"] == {}
    assert detail["average_latency"] is None
    assert detail["p99_latency"] is None
    assert detail["state"] == "open"


def test_histogram_quantiles_track_the_distribution():
    """p50/p95/p99 from the buckets are within one bucket of the true values."""
    hist = LatencyHistogram()
    samples = [0.001 * i for i in range(1, 1001)]  # 1 ms .. 1 s, uniform
    for s in samples:
        hist.observe(s)
    assert hist.count == 1000
    assert hist.sum == pytest.approx(sum(samples))
    assert hist.quantile(0.5) == pytest.approx(0.5, abs=0.1)
    assert hist.quantile(0.95) == pytest.approx(0.95, abs=0.1)
    assert hist.quantile(0.99) == pytest.approx(0.99, abs=0.1)
    assert hist.quantile(1.0) == pytest.approx(1.0)
    cumulative = hist.cumulative()
    assert cumulative[-1] == (float("inf"), 1000)
    assert len(cumulative) == len(LATENCY_BUCKETS) + 1


def test_histogram_memory_is_bounded_and_slow_calls_land_in_inf():
    """The histogram keeps a fixed list of counts whatever it sees; slow calls go to +Inf."""
    hist = LatencyHistogram()
    for s in (0.0, 1e-9, 3600.0, 1e9):
        hist.observe(s)
    assert len(hist.counts) == len(LATENCY_BUCKETS) + 1
    assert hist.counts[0] == 2
    assert hist.counts[-1] == 2
    assert hist.quantile(0.99) == 1e9


def test_observe_call_counts_every_call():
    """Each observed call counts once, as a success or not (cost: benchmarks/observe_call.py)."""
    stats = KeyStats()
    for i in range(10):
        stats.observe_call(0.0123, i % 3 == 0)
    assert stats.successes == 4


def test_a_first_try_success_is_one_request_attempt_and_success_in_every_reading():
    """``first_tries`` stands for a request, an attempt and a success at once: the three
    counters read and write as plain totals around it, and ``totals`` adds it up."""
    stats = KeyStats()
    stats.lean_success(0.01)  # a lean path's: the call was not counted before
    stats.began()
    stats.first_try(0.02)  # Seawall.run's: counted when it began
    stats.began()
    stats.attempted()  # a failed attempt, then a retry that succeeded
    stats.attempts += 1
    stats.observe_call(0.5, True)
    stats.requests += 1  # a call still running
    assert (stats.requests, stats.attempts, stats.successes) == (4, 4, 3)
    assert stats.first_tries == 1  # the lean path's: Seawall.run's counts as it began
    other = KeyStats()
    other.lean_success(0.01)
    total = totals([stats, other])
    assert (total["requests"], total["attempts"], total["successes"]) == (5, 5, 4)
    assert total["max_latency"] == 0.5  # the histograms merged too
    snapshot = stats.snapshot()
    assert (snapshot["requests"], snapshot["attempts"], snapshot["successes"]) == (4, 4, 3)


class _Watched(KeyStats):
    """``KeyStats`` noting what ``requests``, ``attempts`` and ``successes`` read after each
    write of a slot: what an exporter's thread, which reads without the key's lock, can see."""

    __slots__ = ("readings",)

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        if name != "readings" and hasattr(self, "readings"):
            self.readings.append((self.requests, self.attempts, self.successes))


def test_no_counter_ever_reads_lower_than_before_while_a_call_is_counted() -> None:
    """Prometheus takes a counter that went down for a reset: every step of every way a
    call is counted leaves each of the three readings where it was, or higher."""
    stats = _Watched()
    stats.readings = []
    stats.began()  # Seawall.run: counted when it begins, then a first-try success
    stats.first_try(0.01)
    stats.began()  # a failed attempt, a retry, a success
    stats.attempted()
    stats.attempted()
    stats.observe_call(0.2, True)
    stats.lean_success(0.01)  # a lean path's success
    stats.began()  # a lean path's failed first attempt, handed to Seawall.run
    stats.requests += 1
    stats.attempts += 1
    stats.successes += 1
    readings = stats.readings
    assert len(readings) >= 10
    for column in range(3):
        seen = [reading[column] for reading in readings]
        assert seen == sorted(seen), f"counter {column} went down: {seen}"
    assert readings[-1] == (5, 5, 4)


async def test_budget_rejection_still_counts_the_call_as_finished(upstream, make_session):
    """A budget refusal counts as a rejection and as a failed call, not twice in the rate."""
    up, server = upstream
    up.default = status(503)
    sw = seawall.Seawall(
        Policy(budget=BudgetPolicy(ratio=0.0, min_retries_per_second=0.0)), entrypoints=False
    )
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 503
    (detail,) = sw.health()["keys"].values()
    assert detail["rejections"] == {"budget": 1}
    assert detail["failures"] == {"server": 1}
    assert detail["success_rate"] == 0.0


async def test_health_totals_add_up_every_keys_waits_and_counters() -> None:
    """health()["waited"] is the sum of the keys' waits (it was always 0.0), as is every counter."""
    sw = seawall.Seawall(
        Policy(retry=RetryPolicy(backoff="constant", jitter="none", base_delay=0.5)),
        entrypoints=False,
    )
    calls: list[str] = []

    async def flaky(key: str) -> str:
        calls.append(key)
        if calls.count(key) == 1:
            raise ConnectionResetError("connection reset")
        return "ok"

    for key in ("a", "b"):
        assert await sw.call(flaky, key, key=key) == "ok"
    report = sw.health()
    assert [report["keys"][k]["waited"] for k in ("a", "b")] == [0.5, 0.5]
    assert report["waited"] == 1.0
    for name in ("requests", "attempts", "retries", "successes"):
        assert report[name] == sum(detail[name] for detail in report["keys"].values()) > 0
