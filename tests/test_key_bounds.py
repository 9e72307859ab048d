"""Per-key state is bounded in count (second-chance LRU) whatever the breakers' states."""

from __future__ import annotations

import gc
import logging
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
from seawall.fleet import Fleet

from ._redis import free_port
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


@pytest.mark.parametrize("fleet", [False, True])
async def test_a_key_state_fits_in_two_kib(fleet: bool) -> None:
    """DESIGN's budget: a key's state (and its registry entry) is at most 2 KiB; a fleet's
    key too (its parts and the round's books; its task made on this loop does not run
    before the measure ends: no await in it)."""
    state_to = None
    if fleet:
        state_to = Fleet(f"redis://127.0.0.1:{free_port()}", timeout=0.05, refresh=5.0)
    sw = seawall.Seawall(entrypoints=False, state=state_to)
    policy = seawall.Policy()
    sw.state_for("warm", policy)  # (a fleet's task and its books start with the first key)
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
        await sw.aclose()
    assert isinstance(state, KeyState)
    assert per_key <= 2048, f"{per_key:.0f} bytes per key"
    # No part of a key has a __dict__: one costs ~100 B on Python 3.11 and 344 B on 3.13
    # (where a fleet's FleetBudget, without __slots__, took its key past 2 KiB).
    parts = [state, state.breaker, state.cooldown, state.budget, state.stats]
    assert [type(p).__name__ for p in parts if hasattr(p, "__dict__")] == []


class _Ticking:
    """A clock that moves 1.3 ms per reading: every reading is a new float, as a real one."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 0.0013
        return self.now


def _live_a_rate_limited_life(state: KeyState, clock: _Ticking) -> None:
    """Calls held by the open breaker, released into the ramp and leaving at their turns; a
    pace learnt from whole-second 429s (slow start, then a second 429 episode that cuts it);
    callers queued for paced turns."""
    breaker, cooldown = state.breaker, state.cooldown
    state.begin(clock())
    breaker.call_failed()  # opens (threshold 1)
    held = [breaker.hold(clock() + 60.0) for _ in range(3)]
    clock.now += breaker.retry_after() + 0.01
    permit = breaker.admit()
    assert permit is not None
    breaker.record(permit, failure=False)  # the probe succeeds: held calls are released
    for future in held:  # ... and take their turns in the ramp, as the request path does
        assert future is not None
        ticket = future.result()
        assert ticket is not None
        clock.now = max(clock.now, ticket)
        breaker.depart()
    for episode in (1.0, None):  # "Retry-After: 1", then a 429 that says nothing
        cooldown.sent()
        cooldown.start(episode)
        cooldown.observe(None, success=False)
        clock.now += 1.0
        for _ in range(40):
            state.begin(clock())
            wait = cooldown.reserve(5.0)
            clock.now += wait + cooldown.spaced()
            cooldown.sent()
            cooldown.observe(None, success=True)
            state.breaker.succeeded()
    assert cooldown.cuts == 2
    assert cooldown.rate is not None


@pytest.mark.parametrize(
    ("keys", "successes", "lean", "bound"),
    [(500, 0, False, 2207), (100, 1000, False, 2397), (100, 1000, True, 2347)],
)
async def test_a_key_that_learnt_a_pace_stays_small(
    keys: int, successes: int, lean: bool, bound: int
) -> None:
    """A key that learnt a pace, met 429 episodes and held calls: 2,074 B measured when
    the bound was set; 2,096 B for the same code on a later host (another build of the same
    Python), and 2,120 B with the early probe's three counters (demand in two samples, the
    probes that missed: three slots of ``LearntPace``, 24 B); 2,128 B with ``KeyStats.first_tries``
    (a slot, 8 B: one count for a call that succeeded at its first attempt, where the
    lean paths made three); 2,136 B with ``Cooldown._spare`` (a slot, 8 B: the turns of
    callers that left before them, ``seawall.spare_turns``; a list only while there are some);
    2,192 B with what tells a host's stall from a lower limit (``seawall.pace_samples``:
    the last answer, when it was sent, the last bunch and whether it came after a calm;
    four slots and a float, 56 B); 2,200 B with ``Breaker._lent`` (a slot, 8 B: the
    half-open probes lent to threads, whose turns end at their attempt limit; a list
    only while there are some; fix/sync).

    Not yet DESIGN's 2 KiB (2,000 B asked): what is left over it sits in the
    stats (three ``Counter``s and the latency histogram, ~620 B) and the
    breaker (window, ~220 B), outside the cooldown (~330 B learnt). This bound
    keeps it from growing; see docs/architecture.md, "State size".

    A busy key is bigger: past 256 a count is an int object of its own (28 B), so
    after 1,000 successes spread over the latency buckets the same key measured
    2,292 B (2,463 B after 3,000): the histogram's counts, ``requests``, ``attempts``,
    ``successes``; 2,300 B with ``first_tries`` (8 B), 2,239 B when the lean
    paths counted them (one count, ``first_tries``, where ``Seawall.run`` makes three).
    Histogram counts kept in an ``array`` would save 168 B of the 2,463, for
    ~370 more instructions a lean call (+2.8 %): not done (docs/architecture.md,
    ninth session).
    """
    clock = _Ticking()
    sw = seawall.Seawall(entrypoints=False, clock=clock)
    policy = seawall.Policy(breaker=seawall.BreakerPolicy(failure_threshold=1))
    durations = random.Random(1)
    gc.collect()
    logging.disable(logging.WARNING)  # the breaker's log lines (pytest keeps them) are no state
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for number in range(keys):
            state = sw.state_for(f"https://host-{number}.example.com:443", policy)
            _live_a_rate_limited_life(state, clock)
            for _ in range(successes):  # then busy: first-try successes of all durations
                duration = durations.lognormvariate(-2.5, 1.0)
                if lean:  # as the lean paths count them: one count, at the end
                    state.budget.on_request(clock())
                    state.stats.lean_success(duration)
                else:  # as Seawall.run counts them
                    state.begin(clock())
                    state.stats.first_try(duration)
        gc.collect()
        per_key = (tracemalloc.get_traced_memory()[0] - before) / keys
    finally:
        tracemalloc.stop()
        logging.disable(logging.NOTSET)
    assert state.cooldown.level is not None or state.cooldown.rate is not None
    # DESIGN: 2 KiB per key. Measured 2,128 B for this worst life (a learnt pace, held calls,
    # an open breaker, a ramp, every counter in use): at the budget, with little room; a fresh
    # key is far below. The ramp's parts count while it lasts; it is dropped once over.
    assert per_key <= bound, f"{per_key:.0f} bytes per key"


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
