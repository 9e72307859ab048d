"""A learnt pace probes early when its callers crowd: the limit may have lifted.

After a 429 without rate headers the learnt pace holds its level for ``HOLD``
seconds. When the upstream lifts its limit and demand then grows past the
level, callers with a deadline queue behind a pace nothing enforces any more
and are refused. When turns are asked for faster than the pace (the demand) and a
caller would wait ``CROWDED`` of its time left for one, a level whose cut is
``EARLY_PROBE`` s old starts probing from the level (doubling every
``EARLY_DOUBLING`` s, never above ``EARLY_CAP`` times the demand); the turns
booked at the level are void (their callers book again on the rising pace).
A probe that meets the same limit makes the next one wait ``EARLY_BACKOFF``
times as long, up to ``HOLD``.

On the test clock (at 1000 s; exact binary fractions where "exactly" matters).
"""

from __future__ import annotations

import asyncio
import contextlib
import math

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

import seawall
from seawall import learnt_pace
from seawall.cooldown import HOLD, LEARN_TTL, LEVEL, Cooldown
from seawall.learnt_pace import (
    CROWDED,
    EARLY_BACKOFF,
    EARLY_CAP,
    EARLY_DOUBLING,
    EARLY_PROBE,
    EARLY_SAME,
)
from seawall.llm import RateInfo

from ._helpers import Clock

#: The ceiling the first 429 states (a refill interval of 1/128 s), and the level under it.
CEILING = 128.0
BASE = LEVEL * CEILING


def _levelled() -> tuple[Clock, Cooldown]:
    """A key paced at a measured level (CUBIC), its pause over: the clock at the cut."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(1 / CEILING)
    assert cooldown.level == pytest.approx(BASE)
    clock.now = 1000.0 + 1 / CEILING  # the pause's end: the cut's time
    return clock, cooldown


def _ask(clock: Clock, cooldown: Cooldown, per_second: float, seconds: float) -> None:
    """Callers with no deadline ask for turns at ``per_second`` for ``seconds``: the demand
    (they never start a probe themselves)."""
    for _ in range(round(per_second * seconds)):
        clock.now += 1 / per_second
        cooldown.reserve()


def _crowd(clock: Clock, cooldown: Cooldown, per_second: float = 250.0, left: float = 2.0) -> float:
    """A second of demand at ``per_second`` (over the level's 124/s: a queue grows), then a
    caller with ``left`` s left asks (1/64 s later: the second's sum of steps is no exact
    1.0)."""
    _ask(clock, cooldown, per_second, 1.0)
    clock.now += 1 / 64
    return cooldown.reserve(max_wait=left)


def _probing(
    clock: Clock, cooldown: Cooldown, per_second: float = 250.0, left: float = 2.0
) -> bool:
    """Whether crowded callers start a probe (the turns booked so far are then void)."""
    cuts = cooldown.cuts
    _crowd(clock, cooldown, per_second, left)
    return cooldown.cuts == cuts + 1


def test_a_crowded_caller_starts_a_probe_from_the_level_and_voids_the_booked_turns() -> None:
    clock, cooldown = _levelled()
    _ask(clock, cooldown, 250.0, EARLY_PROBE)
    clock.now += 1 / 64
    queued = cooldown.reserve()
    assert queued >= CROWDED * 2.0  # 250/s asked against 124/s: a queue
    cuts = cooldown.cuts
    assert cooldown.reserve(max_wait=2.0) >= CROWDED * 2.0
    assert cooldown.cuts == cuts + 1  # booked at the level: void, every caller books again
    assert cooldown.reserve() < queued  # the queue starts afresh from now
    # Doubling every EARLY_DOUBLING s from the level, while 250/s are asked for.
    _ask(clock, cooldown, 250.0, EARLY_DOUBLING)
    assert cooldown.rate == pytest.approx(2 * BASE, rel=0.01)
    assert cooldown.level == pytest.approx(BASE)  # the measured level stays what it was


def test_an_early_probe_stays_within_its_cap_of_the_demand() -> None:
    """150/s asked for: the probe rises to 1.2x that (180/s), not to 4x the level."""
    clock, cooldown = _levelled()
    assert _probing(clock, cooldown, per_second=150.0, left=0.5)
    _ask(clock, cooldown, 150.0, 2 * EARLY_DOUBLING)
    assert cooldown.rate == pytest.approx(EARLY_CAP * 150.0, rel=0.02)


def test_a_queue_that_drains_at_the_pace_starts_no_probe() -> None:
    """Callers queued in a pause, asking for less than the pace: no herd to make."""
    clock, cooldown = _levelled()
    for _ in range(200):  # 1.6 s of turns booked at once
        cooldown.reserve()
    _ask(clock, cooldown, 100.0, EARLY_PROBE)  # then 100/s: under the level's 124/s
    cuts = cooldown.cuts
    assert cooldown.reserve(max_wait=2.0) >= CROWDED * 2.0
    assert cooldown.cuts == cuts
    _ask(clock, cooldown, 100.0, 2.0)
    assert cooldown.rate == pytest.approx(BASE)  # holding


def test_crowding_before_early_probe_seconds_after_the_cut_keeps_the_level() -> None:
    clock, cooldown = _levelled()
    cuts = cooldown.cuts
    _ask(clock, cooldown, 250.0, EARLY_PROBE / 2)
    cooldown.reserve(max_wait=0.5)
    assert cooldown.cuts == cuts
    _ask(clock, cooldown, 250.0, 3.0)
    assert cooldown.rate == pytest.approx(BASE)  # holding (its rise over): nobody crowded since


def test_a_caller_with_no_time_left_starts_no_probe() -> None:
    """Its deadline has passed: it is refused, and says nothing of the queue."""
    clock, cooldown = _levelled()
    _ask(clock, cooldown, 250.0, EARLY_PROBE)
    clock.now += 1 / 64
    cuts = cooldown.cuts
    cooldown.reserve(max_wait=0.0)
    cooldown.reserve(max_wait=-1.0)
    assert cooldown.cuts == cuts
    assert cooldown.reserve(max_wait=2.0) > 0  # the same queue, for a caller with time
    assert cooldown.cuts == cuts + 1


def test_callers_without_a_deadline_never_start_a_probe() -> None:
    """However long they queue: nobody is refused, the level holds."""
    clock, cooldown = _levelled()
    _ask(clock, cooldown, 250.0, 4.0)
    assert cooldown.rate == pytest.approx(BASE)


def test_a_wait_for_the_servers_pause_alone_is_not_crowding() -> None:
    """A 429's ``Retry-After`` makes every caller wait; that is not demand past the pace."""
    clock, cooldown = _levelled()
    clock.now += EARLY_PROBE
    cooldown.start(1.0, sent_at=1000.0)  # an old 429 (sent before the cut): its pause only
    cuts = cooldown.cuts
    for _ in range(250):  # 250 callers with 0.5 s left ask in the pause: refused, no turn
        assert cooldown.reserve(max_wait=0.5) == pytest.approx(1.0)
    assert cooldown.reserve(max_wait=2.0) == pytest.approx(1.0)  # waits the pause, first
    assert cooldown.cuts == cuts


def _probe_meets_a_429(clock: Clock, cooldown: Cooldown, admitted_per_s: float) -> float:
    """Crowded callers start a probe; for a second the upstream admits ``admitted_per_s``,
    then a 429 asks for 1 s (a whole-seconds limit). The admitted rate measured before it."""
    assert _probing(clock, cooldown)
    for _ in range(int(admitted_per_s)):
        clock.now += 1 / admitted_per_s
        cooldown.reserve()
        cooldown.sent()
        cooldown.observe(None, success=True)
    admitted = cooldown.admitted()
    assert admitted is not None
    cooldown.start(1.0, sent_at=clock.now)
    clock.now += 1.0  # the pause's end: the new cut
    return admitted


def test_a_probe_that_meets_the_same_limit_makes_the_next_one_wait_longer() -> None:
    clock, cooldown = _levelled()
    admitted = _probe_meets_a_429(clock, cooldown, admitted_per_s=CEILING)
    assert admitted < EARLY_SAME * CEILING
    assert cooldown.level == pytest.approx(LEVEL * admitted, rel=0.02)  # what it took
    cut = clock.now
    assert not _probing(clock, cooldown)  # EARLY_PROBE after the cut: too soon now
    _ask(clock, cooldown, 250.0, cut + EARLY_PROBE * EARLY_BACKOFF - 1.0 - clock.now)
    assert _probing(clock, cooldown)  # (_crowd asks for a second more)


def test_after_two_misses_early_probes_wait_for_the_hold() -> None:
    clock, cooldown = _levelled()
    _probe_meets_a_429(clock, cooldown, admitted_per_s=CEILING)
    _ask(clock, cooldown, 250.0, EARLY_PROBE * EARLY_BACKOFF - 1.0)
    _probe_meets_a_429(clock, cooldown, admitted_per_s=CEILING)
    # The next wait would be EARLY_PROBE * EARLY_BACKOFF**2 (16 s); it is capped at HOLD.
    assert EARLY_PROBE * EARLY_BACKOFF**2 > HOLD
    _ask(clock, cooldown, 250.0, HOLD - 1.5)
    assert not _probing(clock, cooldown)
    _ask(clock, cooldown, 250.0, 0.5)
    assert _probing(clock, cooldown)


def test_a_probe_that_finds_a_higher_ceiling_levels_there_and_may_probe_early_again() -> None:
    clock, cooldown = _levelled()
    more = 2 * CEILING  # the limit was raised, not lifted
    admitted = _probe_meets_a_429(clock, cooldown, admitted_per_s=more)
    assert admitted >= EARLY_SAME * CEILING
    level = cooldown.level
    assert level is not None
    # What the upstream took, no more than the probe sent at (AWS: min(measured, current)).
    assert LEVEL * EARLY_SAME * CEILING <= level <= LEVEL * admitted
    assert _probing(clock, cooldown, per_second=500.0)  # EARLY_PROBE after the cut: no backoff


@pytest.mark.parametrize("set_by", ["a held cut", "an early probe"])
def test_a_level_an_early_probe_measured_is_cut_at_its_first_429(set_by: str) -> None:
    """A 429 under a level the upstream took for seconds, most of it still taken, is taken
    for a stall of the host once: the level is kept. Not a level an early probe's 429 set:
    it was measured on the probe's way up, with what the bucket had stored meanwhile (above
    the limit), and never held; its first 429 cuts it to what was admitted. (Before, such a
    level was kept once: one more pause of ``Retry-After`` per early probe, 2-5 % of a
    standing limit's successes in the simulator.)"""
    clock, cooldown = _levelled()
    if set_by == "an early probe":
        _probe_meets_a_429(clock, cooldown, admitted_per_s=CEILING)
    level = cooldown.level
    assert level is not None
    per_s = 0.9 * level  # over learnt_pace.JITTER_SHARE of the level: a stall's look
    for _ in range(round(2 * per_s)):  # two seconds, callers without a deadline (no probe)
        clock.now += 1 / per_s
        cooldown.reserve()
        cooldown.sent()
        cooldown.observe(None, success=True)
    assert learnt_pace.JITTER_SHARE * level <= (cooldown.admitted() or 0.0) < level
    cooldown.start(1.0, sent_at=clock.now)
    if set_by == "a held cut":
        assert cooldown.level == pytest.approx(level)  # kept, once
    else:
        assert cooldown.level == pytest.approx(LEVEL * per_s, rel=0.02)  # cut to what it took


def test_a_forgotten_pace_may_probe_early_again_at_its_next_episode() -> None:
    clock, cooldown = _levelled()
    _probe_meets_a_429(clock, cooldown, admitted_per_s=CEILING)
    clock.now += LEARN_TTL + 1.0  # nobody waits: forgotten
    assert cooldown.reserve() == 0.0
    assert cooldown.rate is None
    cooldown.start(1.0)  # the next episode starts from the remembered level
    assert cooldown.level is not None
    clock.now += 1.0  # the pause's end
    assert _probing(clock, cooldown)  # EARLY_PROBE after its cut: not backed off


def test_a_rate_stated_by_headers_is_never_probed() -> None:
    """A key that had learnt a pace, then told its rate by headers (10 per 5 s: 2/s):
    crowded callers wait their turn, and the stated rate does not move."""
    clock, cooldown = _levelled()
    clock.now += 1 / 4
    cooldown.observe(RateInfo(limit=10, remaining=0, reset=5.0), success=True)
    clock.now += 10 * EARLY_PROBE
    cuts = cooldown.cuts
    _ask(clock, cooldown, 20.0, 1.0)
    cooldown.reserve(max_wait=60.0)
    assert cooldown.cuts == cuts
    _ask(clock, cooldown, 20.0, 2 * EARLY_DOUBLING)
    assert cooldown.rate == pytest.approx(2.0)


def test_a_probe_whose_demand_fell_below_a_measure_holds_the_level() -> None:
    """Found by the property below: the demand fell to a few turns a second (too few to
    measure) while the probe ran; an uncapped probe went on doubling (213/s against a
    level of 124/s), and a new burst of callers would have gone at it."""
    clock, cooldown = _levelled()
    assert _probing(clock, cooldown, per_second=300.0)
    for _ in range(200):  # 0.8 s of successes, and nobody asks for a turn
        clock.now += 1 / 256
        cooldown.sent()
        cooldown.observe(None, success=True)
    cooldown.reserve()
    assert cooldown.rate == pytest.approx(BASE)


_STEP = st.one_of(
    st.tuples(st.just("ask"), st.sampled_from([None, -1.0, math.nan, 0.0, 0.01, 0.5, 2.0, 1e9])),
    st.tuples(st.just("ok"), st.sampled_from([1, 20, 100])),  # successes over 1/256 s each
    st.tuples(
        st.just("429"), st.sampled_from([None, -1.0, math.nan, 0.0, 0.004, 0.1, 1.0, 7.0, 1e12])
    ),
    st.tuples(st.just("wait"), st.sampled_from([0.0, 0.001, 0.05, 0.5, 3.0, 20.0])),
    st.tuples(st.just("crowd"), st.sampled_from([0.5, 2.0])),  # a second of 300/s, then one
)


@given(st.lists(_STEP, max_size=60))
def test_any_mix_of_demand_answers_and_429s_keeps_the_pace_bounded(
    steps: list[tuple[str, float | None]],
) -> None:
    """From a measured level, whatever callers ask and the upstream answers: every wait
    within ``max_wait``, a pace finite and at its floor or above, and a probing pace within
    its cap of the demand."""
    clock, cooldown = _levelled()
    for op, value in steps:  # bounded: at most 60 steps of at most 300 calls
        if op == "ask":
            assert 0.0 <= cooldown.reserve(max_wait=value) <= cooldown.max_wait
        elif op == "ok":
            for _ in range(int(value or 0)):
                clock.now += 1 / 256
                cooldown.sent()
                cooldown.observe(None, success=True)
        elif op == "429":
            cooldown.sent()
            cooldown.observe(None, success=False)
            cooldown.start(value)
        elif op == "crowd":
            _ask(clock, cooldown, 300.0, 1.0)
            assert 0.0 <= cooldown.reserve(max_wait=value) <= cooldown.max_wait
        else:
            clock.now += value or 0.0
        cooldown.reserve()  # refreshes the pace
        rate = cooldown.rate
        if rate is not None:
            assert math.isfinite(rate)
            assert rate >= cooldown.floor
        learning = cooldown._learning
        if rate is not None and learning is not None and learning.doubling == EARLY_DOUBLING:
            demand = learning.demand(clock.now)
            if demand is not None:
                assert rate <= max(EARLY_CAP * demand, learning.base, cooldown.floor) * (1 + 1e-9)


# --- through the engine, against a real upstream --------------------------------------


async def _open_loop_against_a_lifting_bucket(limited: float, lifted: float) -> tuple[float, float]:
    """Requests at 80/s (deadline 3 s each) through ``sw.session()`` against a real aiohttp
    token bucket of 50/s (burst 5, ``Retry-After`` in whole seconds, no rate headers) whose
    limit lifts after ``limited`` s. Shares of the requests that succeeded: started while
    limited, and started from 1 s after the lift on."""
    loop = asyncio.get_running_loop()
    clock = loop.time
    start = clock()
    bucket = {"tokens": 5.0, "at": start}

    async def handle(request: web.Request) -> web.Response:
        now = clock()
        if now - start < limited:
            tokens = min(5.0, bucket["tokens"] + (now - bucket["at"]) * 50.0)
            bucket["at"] = now
            if tokens < 1.0:
                bucket["tokens"] = tokens
                wait = math.ceil((1.0 - tokens) / 50.0)
                return web.Response(status=429, headers={"Retry-After": str(max(1, wait))})
            bucket["tokens"] = tokens - 1.0
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handle)
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=10, retry_after_max=60.0),
        timeout=seawall.TimeoutPolicy(attempt=3.0, deadline=3.0),
    )
    sw = seawall.Seawall(policy, entrypoints=False, clock=clock)
    outcomes: list[tuple[float, bool]] = []
    async with TestServer(app) as server, sw.session() as session:
        url = server.make_url("/")

        async def one(started: float) -> None:
            ok = False
            with contextlib.suppress(seawall.SeawallError, aiohttp.ClientError, TimeoutError):
                async with session.get(url) as resp:
                    await resp.read()
                    ok = resp.status == 200
            outcomes.append((started - start, ok))

        tasks = []
        for n in range(int((limited + lifted) * 80)):  # bounded: 80 requests a second
            await asyncio.sleep(max(0.0, start + n / 80 - clock()))
            tasks.append(asyncio.create_task(one(clock())))
        async with asyncio.timeout(60):  # (virtual seconds) a hang guard
            await asyncio.gather(*tasks)
    before = [ok for t, ok in outcomes if t < limited]
    after = [ok for t, ok in outcomes if t >= limited + 1.0]
    return sum(before) / len(before), sum(after) / len(after)


@pytest.mark.virtual_time
async def test_through_the_engine_a_lifted_limit_is_found_while_callers_crowd(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same open loop twice on the loop's virtual clock: with early probes, and with
    ``EARLY_PROBE`` at infinity (the level held ``HOLD`` s after each cut, as before).
    After the lift, early probes serve the callers the held level refused; while limited,
    they cost little. Waits are real here (not test mode), on the virtual clock."""
    seawall.testing.set_testing(False)  # (the autouse fixture turns it back on after)
    probing = await _open_loop_against_a_lifting_bucket(limited=12.0, lifted=10.0)
    monkeypatch.setattr(learnt_pace, "EARLY_PROBE", math.inf)
    holding = await _open_loop_against_a_lifting_bucket(limited=12.0, lifted=10.0)
    assert probing[1] >= holding[1] + 0.2
    assert probing[0] >= holding[0] - 0.05
