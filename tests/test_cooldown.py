"""The shared, paced cooldown: waits, pacing learnt from headers or 429s, the 50-caller target."""

from __future__ import annotations

import asyncio
import itertools

import pytest

import seawall
from seawall.cooldown import CRUISE, LEVEL, SAFETY, START_RATE, Cooldown
from seawall.fake_llm import FakeProvider, openai_error
from seawall.llm import RateInfo
from seawall.testing import fake_llm

from . import _virtual_time as virtual_time


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_429_makes_everyone_wait() -> None:
    """After start(2), a reservation waits the rest of those 2 seconds."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(2.0)
    clock.now += 0.5
    assert cooldown.reserve() == pytest.approx(1.5)


def test_a_learnt_pace_refuses_a_turn_past_the_deadline() -> None:
    """A learnt pace paces; a caller whose turn would miss its deadline fails fast (no turn)."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(0.5)  # "come back in 0.5 s": a wait, not a refill interval (slow start)
    waits = [cooldown.reserve(max_wait=0.8) for _ in range(12)]
    assert waits[0] == pytest.approx(0.5)
    assert waits[1] == pytest.approx(0.5 + 1 / START_RATE)  # paced after the shared wait
    fitted = [w for w in waits if w < 0.8]
    assert waits[: len(fitted)] == fitted  # turns in order until one misses 0.8 s
    assert all(0 < b - a <= 1 / START_RATE + 1e-9 for a, b in itertools.pairwise(fitted))
    assert 2 < len(fitted) < 12
    assert cooldown.rejected == 12 - len(fitted)
    after = cooldown.reserve()  # refused callers took no turn: the next one follows the last
    assert 0 < after - fitted[-1] <= 1 / START_RATE


def test_callers_near_their_deadline_do_not_jump_the_queue() -> None:
    """The herd when a limit lifts: callers with short deadlines behind a learnt pace.

    Before, a caller whose paced turn missed its deadline went at the end of
    the shared wait, unpaced: 50 callers arriving together after a pause all
    went in the same instant. Now at most the pace's own turns go.
    """
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(1.0)  # whole seconds, no headers: a learnt pace (slow start)
    clock.now += 1.0  # the pause is over
    pace = cooldown.rate
    assert pace is not None
    sends = [w for w in (cooldown.reserve(max_wait=0.5) for _ in range(50)) if w < 0.5]
    in_first_bin = sum(1 for w in sends if w < 0.1)
    assert in_first_bin <= 1.2 * pace * 0.1 + 1, sends
    assert cooldown.rejected == 50 - len(sends) > 0


def test_server_stated_rate_still_refuses_what_cannot_fit() -> None:
    """A rate the server stated (headers) makes a caller whose turn is too late fail fast."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.observe(RateInfo(limit=1, remaining=0, reset=1.0), success=True)
    wait = cooldown.reserve(max_wait=0.1)
    assert wait >= 0.1
    assert cooldown.rejected == 1


def test_callers_after_a_short_429_are_staggered() -> None:
    """Without rate headers, a 20 ms wait paces later callers about 20 ms apart."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(0.02)
    waits = [cooldown.reserve() for _ in range(5)]
    gaps = [b - a for a, b in itertools.pairwise(waits)]
    assert gaps == pytest.approx([0.02 / (CRUISE * LEVEL)] * 4, rel=0.01)


def test_headers_teach_the_rate_and_the_burst() -> None:
    """Rate headers let the burst through at once, then pace at the refill rate."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.sent()
    cooldown.observe(RateInfo(limit=10, remaining=3, reset=0.7), success=True)
    assert cooldown.rate == pytest.approx(10.0)
    assert [cooldown.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert cooldown.reserve() == pytest.approx(1 / (10 * SAFETY))


def test_in_flight_requests_are_not_spent_twice() -> None:
    """Remaining slots still owed to requests in flight are not handed out again."""
    clock = Clock()
    cooldown = Cooldown(clock)
    for _ in range(5):
        cooldown.sent()
    cooldown.observe(RateInfo(limit=10, remaining=6, reset=0.4), success=True)
    assert cooldown.inflight == 4
    assert [cooldown.reserve() for _ in range(2)] == [0.0, 0.0]
    assert cooldown.reserve() > 0


def test_a_wait_longer_than_the_deadline_reserves_nothing() -> None:
    """A caller that cannot wait gets the wait back and leaves the schedule alone."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(1.5)
    assert cooldown.reserve(max_wait=0.1) == pytest.approx(1.5)
    assert cooldown.rejected == 1
    assert cooldown.reserve() == pytest.approx(1.5)


async def test_short_deadline_fails_fast() -> None:
    """A call whose deadline is shorter than the cooldown fails at once (DeadlineExceededError)."""
    async with FakeProvider() as fake:
        fake.then(openai_error(429, "rate_limit_exceeded", headers={"retry-after": "30"}))
        policy = seawall.Policy.for_llm(retry=seawall.RetryPolicy(max_attempts=1))
        sw = seawall.Seawall(routes={"127.0.0.1": policy}, entrypoints=False)
        async with sw.session() as session:
            url = fake.url + "/v1/chat/completions"
            async with session.post(url, json={}) as resp:
                assert resp.status == 429
            with seawall.deadline(1.0), pytest.raises(seawall.DeadlineExceededError):
                await session.post(url, json={})
        assert fake.hits == 1
        assert sw.costs()["keys"][next(iter(sw.costs()["keys"]))]["avoided_calls"]["cooldown"] == 1


async def _run(fake: FakeProvider, callers: int, calls: int) -> int:
    policy = seawall.Policy.for_llm(
        retry={"max_attempts": 10, "retry_methods": ["POST"], "retry_after_max": 120}
    )
    clock = asyncio.get_running_loop().time  # virtual: see _scenario
    sw = seawall.Seawall(routes={"127.0.0.1": policy}, entrypoints=False, clock=clock)
    ok = 0
    async with sw.session() as session:

        async def caller() -> None:
            nonlocal ok
            for _ in range(calls):
                url = fake.url + "/v1/chat/completions"
                async with session.post(url, json={"model": "gpt-4o"}) as resp:
                    await resp.read()
                    ok += resp.status == 200

        async with asyncio.timeout(60):  # virtual seconds: a hang guard (the run takes ~6)
            await asyncio.gather(*(caller() for _ in range(callers)))
    return ok


@pytest.mark.parametrize(
    ("flavor", "rate", "burst", "calls"),
    # 12 calls each with headers: at 6 (300 calls) the first wave's 429s, sent before any
    # header was read, sat at 0.04-0.05 per success.
    [("none", 250.0, 25.0, 30), ("openai", 200.0, 50.0, 12), ("anthropic", 200.0, 50.0, 12)],
)
def test_fifty_callers_meet_the_429_target(
    flavor: str, rate: float, burst: float, calls: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50 concurrent callers against a token bucket get fewer than 0.05 429s per success.

    Real requests on 127.0.0.1 and real pacing, on an event loop whose clock moves
    only while it is idle (``tests/_virtual_time.py``): the bucket, seawall's clock
    and its sleeps all read it. On real time a loaded machine stalls the loop,
    and every caller due during a stall longer than the bucket's burst (0.1 s
    here) goes at once into an empty bucket: the 429s measured the machine's
    load (and 1500 calls could outlast any time limit). Real time and latency:
    ``benchmarks/ratelimit.py``.
    """
    seawall.testing.set_testing(False)  # real (virtual-time) waits: this test measures pacing

    async def scenario() -> tuple[int, FakeProvider]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, virtual_time.VirtualTimeLoop)
        # The fake's token bucket, and the reset dates it sends and seawall reads
        # (anthropic), on the loop's clock.
        monkeypatch.setattr(fake_llm, "time", loop.time_module())
        monkeypatch.setattr(seawall.llm, "time", loop.time_module())
        async with FakeProvider(rate=rate, burst=burst, flavor=flavor) as fake:
            return await _run(fake, 50, calls), fake

    ok, fake = virtual_time.run(scenario())
    assert ok == 50 * calls
    assert fake.rejected / fake.served < 0.05, (fake.rejected, fake.served)


def test_a_fresh_keys_first_burst_of_429s_cuts_the_pace_once() -> None:
    """The lean paths do not count attempts in flight: the 429s of a burst sent before
    the first cut are told apart by when they were sent, not by ``inflight``."""
    clock = Clock()
    cooldown = Cooldown(clock)
    sent = clock.now  # fifty requests go at once on the lean path (inflight stays 0)
    clock.now += 0.01
    cooldown.start(1.0, sent)  # the first 429: a cut, the pause, then a slow start
    cuts, rate = cooldown.cuts, cooldown.rate
    for _ in range(49):  # the other 49 of the burst come back refused too
        clock.now += 0.001
        cooldown.observe(None, success=False)
        cooldown.start(1.0, sent)
    assert cooldown.cuts == cuts == 1
    assert cooldown.rate == rate  # not halved 49 times down to the floor
    clock.now += 1.5
    cooldown.start(1.0, clock.now - 0.01)  # sent after the pause: news, it cuts
    assert cooldown.cuts == 2
