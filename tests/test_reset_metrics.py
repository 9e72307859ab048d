"""``sw.reset_metrics()`` zeroes every counter, and keeps what is state, not a count."""

from __future__ import annotations

import time

import pytest

import seawall
from seawall.fake_llm import FakeProvider

from .conftest import status


class Faulty:
    """An observer that always raises: a plugin fault, counted per plugin and hook."""

    @seawall.hookimpl
    def seawall_event(self, event: object) -> None:
        raise RuntimeError("broken observer")


@pytest.fixture
async def fake():
    async with FakeProvider() as provider:
        yield provider


async def test_reset_metrics_zeroes_every_counter(upstream, fake) -> None:
    """Uptime, key counters, last failure, classifier, escalation, faults and costs start over."""
    up, server = upstream
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=2)),
        routes={f"127.0.0.1:{fake.url.rsplit(':', 1)[1]}": seawall.Policy.for_llm()},
        plugins=[Faulty()],
        entrypoints=False,
    )
    sw.add_pattern("card declined", seawall.Classification(category=seawall.Category.CLIENT))
    up.then(status(503), status(401))  # a retried 503, then a 401: escalated
    async with sw.session() as session:
        async with session.get(server.make_url("/a")) as resp:
            assert resp.status == 401
        async with session.post(f"{fake.url}/v1/chat/completions", json={"model": "gpt-4o"}):
            pass

    async def odd() -> None:
        raise RuntimeError("something odd happened")

    for _ in range(2):  # the same message again: a hit in the classifier's cache
        with pytest.raises(RuntimeError):
            await sw.using(key="db").call(odd)
    await sw.aclose()  # the escalation queue is delivered

    sw.started -= 3600  # as if up for an hour
    before = sw.health()
    assert before.uptime >= 3600
    assert before.by_key["db"].last_failure is not None
    assert before.requests == 4
    assert before.plugin_faults
    assert before.escalation["reported"] >= 1
    classifier = sw.classifier_stats()
    assert classifier["classifications"] >= 4
    assert classifier["cache_hits"] >= 1
    assert sw.costs().calls == 1

    reset_at = time.time()
    sw.reset_metrics()
    after = sw.health()
    assert 0 <= after.uptime <= time.time() - reset_at
    assert (after.requests, after.attempts, after.retries, after.successes) == (0, 0, 0, 0)
    assert after.failures == {}
    for key in after.by_key.values():
        assert key.requests == 0
        assert key.last_failure is None
        assert key.p99_latency is None
    assert after.plugin_faults == {}
    assert set(after.escalation.values()) == {0}
    classifier = sw.classifier_stats()
    assert classifier["classifications"] == 0
    assert classifier["cache_hits"] == classifier["cache_misses"] == 0
    assert classifier["cache_hit_rate"] is None
    assert classifier["user_pattern_matches"] == 0
    assert classifier["user_patterns"] == 1  # the patterns themselves stay
    costs = sw.costs()
    assert (costs.calls, costs.cost_usd, costs.input_tokens) == (0, 0, 0)
    assert all(key.models == {} for key in costs.by_key.values())


async def test_reset_keeps_breakers_budgets_and_cooldowns() -> None:
    """State that protects the upstream is not a metric: an open breaker stays open."""
    sw = seawall.Seawall(
        seawall.Policy(
            retry=seawall.RetryPolicy(max_attempts=1),
            breaker=seawall.BreakerPolicy(failure_threshold=1),
        ),
        entrypoints=False,
    )

    async def down() -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(ConnectionRefusedError):
        await sw.using(key="bad").call(down)
    sw.reset_metrics()
    assert sw.health().by_key["bad"].state == "open"
    with pytest.raises(seawall.CircuitOpenError):
        await sw.using(key="bad").call(down)
