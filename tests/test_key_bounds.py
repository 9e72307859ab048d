"""Per-key state is bounded in count (second-chance LRU) whatever the breakers' states."""

from __future__ import annotations

import gc
import random
import tracemalloc
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

import seawall
from seawall import breaker as breaker_module
from seawall.breaker import BreakerState
from seawall.engine import MAX_KEYS, KeyState

from .conftest import Upstream

_OPENS_AT_ONCE = seawall.Policy(breaker=seawall.BreakerPolicy(failure_threshold=1))


def _flood(sw: seawall.Seawall, prefix: str, count: int) -> None:
    """``count`` new keys, each with its breaker opened by one failed call."""
    for number in range(count):
        sw.state_for(f"{prefix}{number}", _OPENS_AT_ONCE).breaker.call_failed()


def test_open_breakers_do_not_pin_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """10,400+ keys with open breakers stay within MAX_KEYS; evictions come in batches."""
    sw = seawall.Seawall(entrypoints=False)
    batches: list[int] = []
    forget = sw.registry.forget_idle

    def counted() -> None:
        before = len(sw._states)
        forget()
        batches.append(before - len(sw._states))

    monkeypatch.setattr(sw.registry, "forget_idle", counted)
    total = MAX_KEYS + MAX_KEYS // 4 + 400  # 12,900 keys, all with open breakers
    _flood(sw, "k", total)
    assert len(sw._states) <= MAX_KEYS
    assert all(s.breaker.state is BreakerState.OPEN for s in sw._states.values())
    # The cost per new key does not grow with the number of keys: each eviction
    # run forgets a fixed batch (MAX_KEYS // 8), so runs are rare and each
    # frees room for that many new keys (the old code rescanned every key
    # for every new one and forgot nothing).
    assert batches
    assert all(freed == MAX_KEYS // 8 for freed in batches)
    assert len(batches) == -(-(total - MAX_KEYS) // (MAX_KEYS // 8))
    assert f"k{total - 1}" in sw._states
    assert "k0" not in sw._states


def test_a_busy_key_survives_a_flood_of_new_ones() -> None:
    """A key used between floods gets second chances; an idle one is forgotten."""
    sw = seawall.Seawall(entrypoints=False)
    hot = sw.state_for("hot", sw.policy)
    sw.state_for("idle", sw.policy)
    for round_ in range(4):  # bounded: 4 floods of half MAX_KEYS each
        hot.stats.requests += 1  # what every call through the key does
        _flood(sw, f"r{round_}-", MAX_KEYS // 2)
    assert sw._states.get("hot") is hot
    assert "idle" not in sw._states
    assert len(sw._states) <= MAX_KEYS


async def test_a_cached_route_never_counts_on_a_forgotten_state(
    upstream: tuple[Upstream, Any], make_session: Callable[..., aiohttp.ClientSession]
) -> None:
    """After its key is forgotten, the next request through the route counts on a fresh state."""
    up, server = upstream
    sw = seawall.Seawall(entrypoints=False)
    session = make_session(sw)
    async with session.get(server.make_url("/")) as resp:
        assert resp.status == 200
    key = next(iter(sw._states))
    first = sw._states[key]
    assert first.stats.requests == 1
    _flood(sw, "f", 2 * MAX_KEYS)  # used once, then idle: a second chance, then forgotten
    assert key not in sw._states
    async with session.get(server.make_url("/")) as resp:
        assert resp.status == 200
    assert sw._states[key] is not first
    assert sw._states[key].stats.requests == 1
    assert first.stats.requests == 1  # the forgotten state did not count the request
    assert up.hits == 2


def test_a_key_state_fits_in_two_kib() -> None:
    """DESIGN's budget: a key's state (and its registry entry) is at most 2 KiB."""
    sw = seawall.Seawall(entrypoints=False)
    policy = seawall.Policy()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for number in range(1000):
            state = sw.state_for(f"https://host-{number}.example.com:443", policy)
            state.breaker.succeeded()  # a used key: its breaker's window holds an entry
        per_key = (tracemalloc.get_traced_memory()[0] - before) / 1000
    finally:
        tracemalloc.stop()
    assert isinstance(state, KeyState)
    assert per_key <= 2048, f"{per_key:.0f} bytes per key"


def test_breakers_share_one_jitter_source_and_stay_jittered() -> None:
    """No ``Random`` per breaker; recovery timeouts still differ, and seeding repeats them."""
    sw = seawall.Seawall(policy=_OPENS_AT_ONCE, clock=lambda: 0.0, entrypoints=False)

    def reopen_times() -> list[float]:
        states = [sw.state_for(f"j{n}-{random.random()}", sw.policy) for n in range(20)]
        for state in states:
            state.breaker.call_failed()
        return [state.breaker.retry_after() for state in states]

    breaker_module.seed(3)
    first = reopen_times()
    breaker_module.seed(3)
    assert reopen_times() == first
    assert len(set(first)) == len(first)  # no two keys probe in step
    assert all(0.8 * 30.0 <= wait <= 30.0 for wait in first)
    breaker_module.seed(None)
