"""Pacing after a cooldown (issue 16): no herd of our own, a rate learnt without headers.

Most tests drive one ``Cooldown`` with many callers against a token-bucket
upstream on a virtual clock (``tests/_pacing_sim.py``): deterministic, no
wall clock. The last ones go through the engine with a real aiohttp upstream.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time

import pytest
from aiohttp import web

import seawall
from seawall import learnt_pace
from seawall.cooldown import (
    CRUISE,
    LEVEL,
    SLOW_START_DOUBLING,
    START_RATE,
    Cooldown,
)

from ._pacing_sim import Clock, peak_per_bin, simulate

RATE = 200.0  # the upstream's requests per second
T0 = 1000.0  # the simulation's clock at its start


def most_in_window(times: list[float], width: float) -> int:
    """The most sends in any ``width``-second window (sliding, not binned)."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, t in enumerate(ordered):
        while t - ordered[first] >= width:
            first += 1
        most = max(most, last - first + 1)
    return most


# --- no herd of our own ---------------------------------------------------------


def test_waiters_with_no_rate_known_leave_on_a_ramp() -> None:
    """A fresh key's first 429 ("Retry-After: 1", nothing else): 50 waiters, never at once.

    They leave after the whole second, on a slow start: ``START_RATE`` at
    first, doubling every ``SLOW_START_DOUBLING`` seconds.
    """
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(1.0)
    turns = [clock.now + cooldown.reserve() for _ in range(50)]
    assert min(turns) == pytest.approx(clock.now + 1.0)  # the server's wait, in full
    assert all(b > a for a, b in itertools.pairwise(turns))  # one at a time
    assert peak_per_bin(turns, clock.now + 1.0, clock.now + 1.1) <= START_RATE * 0.1 + 1
    assert turns[-1] - turns[0] > SLOW_START_DOUBLING  # a ramp, not a step


def test_waiters_are_released_at_the_learnt_rate() -> None:
    """After each cooldown of a learnt pace, callers leave at that pace: <= 1.2x of it per 100 ms.

    48 callers, 120 virtual seconds, an upstream of 200/s with a bucket of 5
    answering ``Retry-After: 1``. No request is sent during any pause.
    """
    run, _, cooldown = simulate(48, RATE, 5.0, 120.0)
    assert len(run.pauses) >= 4
    for at, end in run.pauses:
        assert not [t for t in run.sends if at + 0.01 <= t < end]  # Retry-After honoured
    for _, end in run.pauses[1:]:  # after the first: a pace is known
        after = [t for t in run.sends if end <= t < end + 1.0]
        paces = [p for t, p in zip(run.sends, run.paces, strict=True) if end <= t < end + 1.0]
        assert after, "callers were waiting"
        assert most_in_window(after, 0.1) <= 1.2 * max(paces) * 0.1
    assert cooldown.level is not None


# --- learning the rate without headers ---------------------------------------------


def test_the_rate_is_learnt_from_whole_second_429s() -> None:
    """Whole-second ``Retry-After`` only, a bucket of 5: < 0.05 429s per success, >= 90 % of it.

    The first wave (48 callers at once against a bucket of 5) and the learning
    in the first seconds cost most of the 429s; from 20 s on, the pace keeps
    over 90 % of the upstream's rate.
    """
    run, ok, cooldown = simulate(48, RATE, 5.0, 120.0)
    assert run.refused / run.successes < 0.05
    steady = sum(t >= T0 + 20 for t in ok) / 100.0
    assert steady >= 0.9 * RATE
    assert run.successes >= 0.85 * RATE * 120
    assert cooldown.level == pytest.approx(RATE * LEVEL, rel=0.05)


@pytest.mark.parametrize(("rate", "burst"), [(40.0, 1.0), (200.0, 40.0), (5.0, 1.0)])
def test_other_buckets_are_learnt_too(rate: float, burst: float) -> None:
    """Slow, burst-free and bursty buckets: few 429s after the first wave, most of the rate."""
    run, ok, _ = simulate(48, rate, burst, 120.0)
    later = run.refused - 48  # the first wave: every caller at once
    assert later / run.successes < 0.05
    assert sum(t >= T0 + 20 for t in ok) / 100.0 >= 0.85 * rate


def test_a_busy_event_loop_costs_little() -> None:
    """Callers woken up to 10 ms late, in batches: sends stay spaced, the rate still holds."""
    run, ok, _ = simulate(48, RATE, 5.0, 120.0, jitter=0.005, seed=7)
    assert run.refused / run.successes < 0.05
    assert sum(t >= T0 + 20 for t in ok) / 100.0 >= 0.9 * RATE


@pytest.mark.parametrize("jitter", [0.0, 0.005])
def test_no_herd_when_the_limit_lifts(jitter: float) -> None:
    """The queue behind a learnt pace drains at the pace when the limit lifts: <= 1.2x per 100 ms.

    48 callers against 200/s (bucket of 5, ``Retry-After: 1``) for 40 s, then
    the upstream takes everything; the pace probes upwards from its level, so
    the first seconds after the lift carry at most 1.2x the learnt rate.
    """
    run, _, cooldown = simulate(48, RATE, 5.0, 46.0, lift=40.0, jitter=jitter, seed=7)
    level = cooldown.level
    assert level is not None
    assert level < 1.2 * RATE
    before = sum(T0 + 38.0 <= t < T0 + 40.0 for t in run.sends) / 2.0
    assert before >= 0.85 * RATE  # the queue was there: the pace was what held callers
    assert peak_per_bin(run.sends, T0 + 40.0, T0 + 46.0) <= 1.2 * level * 0.1


def test_crowded_callers_find_a_lifted_limit_soon() -> None:
    """Requests arrive at 200/s (open loop), each refused when its turn would come more than
    2 s later, against 150/s (bucket of 5, ``Retry-After: 1``); the limit lifts at 10 s.

    A level held for ``HOLD`` seconds (the probes disabled) gives 144/s in the 5 s
    from 11 s; probing early, the pace serves the 200/s and what queued: 215/s.
    The 100 ms peak after the lift stays what holding gives (no herd of our own).
    """
    run, ok, _ = simulate(0, 150.0, 5.0, 40.0, lift=10.0, deadline=2.0, arrivals=200.0)
    assert sum(T0 + 11 <= t < T0 + 16 for t in ok) / 5.0 >= 1.2 * 150.0
    assert peak_per_bin(run.sends, T0 + 10, T0 + 40) <= 1.3 * 200.0 * 0.1


@pytest.mark.parametrize(("arrivals", "rate"), [(200.0, 150.0), (80.0, 50.0), (120.0, 100.0)])
def test_early_probes_cost_a_standing_limit_little(
    monkeypatch: pytest.MonkeyPatch, arrivals: float, rate: float
) -> None:
    """The same open loop against a limit that stays: under 0.05 429s per success, and at
    least 95 % of the successes of a level held for ``HOLD`` (each probe that meets the
    limit costs a pause of its ``Retry-After``; they back off)."""

    def run_for(early: float) -> tuple[float, float]:
        monkeypatch.setattr(learnt_pace, "EARLY_PROBE", early)
        run, _, _ = simulate(0, rate, 5.0, 40.0, deadline=2.0, arrivals=arrivals)
        return run.successes, run.refused / run.successes

    probing, refused = run_for(learnt_pace.EARLY_PROBE)
    holding, _ = run_for(math.inf)
    assert refused < 0.05
    assert probing >= 0.95 * holding


def test_a_stalling_host_does_not_ratchet_the_level_down() -> None:
    """The upstream's process stalls 80 ms every 3 s (a busy host): each stall bunches sends
    past its bucket of 5 and costs a 429 and a second's pause (a third of the time: the
    bound). The 429s answered together with the answer before them neither cut the level
    nor stop its probe, which finds the limit between stalls (before: a level of 98/s
    after 60 s, 40 % of the rate from 20 s on; 64/s and 29 % before the jitter share)."""
    run, ok, cooldown = simulate(48, RATE, 5.0, 60.0, stalls=(3.0, 0.08))
    assert run.refused / run.successes < 0.05
    assert cooldown.level is not None
    assert cooldown.level >= 0.9 * RATE
    assert sum(t >= T0 + 20 for t in ok) / 40.0 >= 0.6 * RATE


def test_a_pace_learnt_low_in_an_outage_recovers() -> None:
    """30 s of nothing but 429s drive the pace down; it grows back within seconds after."""
    run, ok, cooldown = simulate(48, RATE, 5.0, 90.0, outage=30.0)
    during = [t for t in run.sends if t < T0 + 30.0]
    assert len(during) <= 48 + 2 * 30  # the first wave, then about one probe per pause
    recovered = sum(T0 + 45.0 <= t < T0 + 90.0 for t in ok) / 45.0
    assert recovered >= 0.85 * RATE
    assert cooldown.rate is not None
    assert cooldown.rate >= 0.8 * RATE


def test_one_cut_per_episode() -> None:
    """The 429s of requests already in flight at a cut do not cut the pace again."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(0.005)  # a refill interval: 200/s
    paced = cooldown.rate
    assert paced == pytest.approx(200 * LEVEL * CRUISE)
    for _ in range(5):
        cooldown.sent()
    clock.now += 0.01
    for _ in range(5):  # all five meet a 429
        cooldown.observe(None, success=False)
        cooldown.start(1.0)
    assert cooldown.cuts == 2  # the first guess, then one for the whole episode
    assert cooldown.remaining() == pytest.approx(1.0)


def test_a_forgotten_pace_starts_again_from_its_level() -> None:
    """A pace nobody waited on is forgotten (the lean path again); the next 429 starts from it."""
    _, _, cooldown = simulate(48, RATE, 5.0, 40.0)
    level = cooldown.level
    assert level is not None
    clock = cooldown._clock
    assert isinstance(clock, Clock)
    clock.now += 30.0  # nobody called
    assert cooldown.reserve() == 0.0
    assert cooldown.rate is None
    cooldown.start(1.0)
    assert cooldown.rate == pytest.approx(level * CRUISE)


# --- through the engine, against a real upstream ----------------------------------------


async def test_a_429_without_retry_after_reaches_the_cooldown(upstream, make_session) -> None:
    """A bare 429 (no Retry-After, no rate headers) still starts a pace for its key."""
    up, server = upstream
    up.then(lambda request: asyncio.sleep(0, web.Response(status=429)))
    policy = seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1))
    sw = seawall.Seawall(policy=policy, entrypoints=False)
    session = make_session(sw)
    async with session.get(server.make_url("/")) as resp:
        assert resp.status == 429
    (state,) = sw._states.values()
    assert state.cooldown.cuts == 1
    assert state.cooldown.rate == pytest.approx(START_RATE)
    assert state.cooldown.until == 0.0  # nobody asked for a pause


@pytest.mark.slow
async def test_no_call_before_a_later_retry_after_ends(upstream, make_session) -> None:
    """Callers holding paced turns when a 429 asks for a second all wait out that second.

    A first call meets ``retry-after-ms: 100``, which paces the key at about
    9/s. Five callers then book turns ~0.11 s apart; the first of them meets
    ``Retry-After: 1``: the others' turns are void, and none of them reaches
    the upstream before that second has passed (on the upstream's own clock).
    """
    seawall.testing.set_testing(False)  # real waits: the order of events is the point
    up, server = upstream
    arrivals: list[float] = []
    answered: list[float] = []

    def answer(code: int, **headers: str):
        async def handler(request: web.Request) -> web.StreamResponse:
            arrivals.append(time.monotonic())
            if "Retry-After" in headers:
                answered.append(arrivals[-1])
            return web.Response(status=code, headers=headers)

        return handler

    up.then(
        answer(429, **{"retry-after-ms": "100"}),
        answer(200),
        answer(429, **{"Retry-After": "1"}),
    )
    up.default = answer(200)
    policy = seawall.Policy(retry=seawall.RetryPolicy(max_attempts=3))
    sw = seawall.Seawall(policy=policy, entrypoints=False)
    session = make_session(sw)
    url = server.make_url("/")

    async def get() -> int:
        async with session.get(url) as resp:
            return resp.status

    async with asyncio.timeout(10):
        assert await get() == 200  # after its 100 ms: the key is paced now
        (state,) = sw._states.values()
        assert state.cooldown.rate is not None
        statuses = await asyncio.gather(*(get() for _ in range(5)))
    assert statuses == [200] * 5
    (ended,) = answered
    later = [t for t in arrivals if t > ended]
    assert len(later) == 5  # four booked turns, and the retry of the one that met the 429
    assert min(later) >= ended + 1.0
