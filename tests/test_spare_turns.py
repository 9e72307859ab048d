"""Paced turns given back: a caller that leaves before its turn leaves no hole in the schedule.

Before, a caller cancelled while it waited for its paced turn kept the turn
booked: 60 callers giving up after 1 s on a pace of 2 per second left the next
caller waiting 6 s while the upstream idled.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seawall
from seawall.cooldown import Cooldown
from seawall.fake_llm import FakeProvider
from seawall.llm import RateInfo
from seawall.spare_turns import MAX_SPARE
from seawall.testing import fake_llm

from . import _virtual_time as virtual_time
from ._helpers import Clock


def _paced(clock: Clock) -> Cooldown:
    """A cooldown paced at a stated 10 per second (0.9 of it: SAFETY), the bucket empty."""
    cooldown = Cooldown(clock)
    cooldown.observe(RateInfo(limit=1, remaining=0, reset=0.1), success=True)
    assert cooldown.rate is not None
    return cooldown


def test_a_turn_given_back_goes_to_the_next_caller() -> None:
    clock = Clock()
    cooldown = _paced(clock)
    waits = [cooldown.reserve() for _ in range(5)]
    cuts = cooldown.cuts
    cooldown.give_back(clock() + waits[2], cuts)  # the third caller leaves
    assert cooldown.reserve() == pytest.approx(waits[2])  # its turn, not a new one
    step = waits[4] - waits[3]
    assert cooldown.reserve() == pytest.approx(waits[4] + step)  # then the schedule's end


def test_the_last_turn_given_back_shortens_the_schedule() -> None:
    clock = Clock()
    cooldown = _paced(clock)
    waits = [cooldown.reserve() for _ in range(5)]
    for wait in waits[2:]:  # the last three leave, earliest first
        cooldown.give_back(clock() + wait, cooldown.cuts)
    assert cooldown._spare is None or not cooldown._spare.turns  # the schedule ends sooner
    assert [cooldown.reserve() for _ in range(3)] == pytest.approx(waits[2:])


def test_a_cut_voids_turns_given_back() -> None:
    """Turns given back belong to their schedule: after a cut every caller books anew."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(1.0)  # "429, Retry-After: 1": a learnt pace after it
    clock.now += 1.0
    waits = [cooldown.reserve() for _ in range(5)]
    cuts = cooldown.cuts
    cooldown.give_back(clock() + waits[3], cuts)
    cooldown.sent()
    clock.now += 0.03
    cooldown.start(0.0, sent_at=clock() - 0.01)  # another 429: the pace is cut
    assert cooldown.cuts != cuts
    cooldown.give_back(clock() + waits[2], cuts)  # a turn of the old schedule: void
    after = [cooldown.reserve() for _ in range(3)]
    assert all(abs(clock() + wait - (1000.0 + 1.0 + waits[3])) > 1e-3 for wait in after)
    assert after[0] == 0.0  # the schedule starts anew from the cut


def test_passed_turns_are_not_taken() -> None:
    clock = Clock()
    cooldown = _paced(clock)
    waits = [cooldown.reserve() for _ in range(5)]
    cooldown.give_back(clock() + waits[1], cooldown.cuts)
    clock.now += waits[2]  # the turn given back has passed, unused
    assert cooldown.reserve() == pytest.approx(waits[4] - waits[2] + (waits[4] - waits[3]))


def test_a_turn_past_a_callers_deadline_stays_for_the_next() -> None:
    clock = Clock()
    cooldown = _paced(clock)
    waits = [cooldown.reserve() for _ in range(5)]
    cooldown.give_back(clock() + waits[3], cooldown.cuts)
    assert cooldown.reserve(max_wait=waits[1]) >= waits[1]  # refused: no turn that soon
    assert cooldown.reserve() == pytest.approx(waits[3])  # the turn is still free


def test_turns_given_back_are_bounded() -> None:
    clock = Clock()
    cooldown = _paced(clock)
    waits = [cooldown.reserve() for _ in range(3 * MAX_SPARE)]
    for wait in waits[: 2 * MAX_SPARE]:  # the early ones leave: none is the last booked
        cooldown.give_back(clock() + wait, cooldown.cuts)
    assert cooldown._spare is not None
    assert len(cooldown._spare.turns) == MAX_SPARE


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30), st.floats(0, 0.5)), max_size=60))
def test_no_two_callers_hold_one_turn(steps: list[tuple[bool, int, float]]) -> None:
    """Whatever callers book, leave and however time passes, the turns held are distinct,
    at least one step apart, and never in the past when taken."""
    clock = Clock()
    cooldown = _paced(clock)
    step = 1.0 / cooldown.rate / 0.9  # SAFETY
    held: list[float] = []
    for book, pick, later in steps:
        clock.now += later
        if book or not held:
            wait = cooldown.reserve()
            assert wait >= 0
            held.append(clock() + wait)
        else:
            cooldown.give_back(held.pop(pick % len(held)), cooldown.cuts)
        live = sorted(t for t in held if t > clock())
        assert all(b - a >= step * 0.999 for a, b in itertools.pairwise(live)), live


def test_an_interrupted_thread_gives_its_turn_back() -> None:
    """A sync caller interrupted while it slept on its turn (Ctrl-C): the next one takes it."""
    seawall.testing.set_testing(False)
    clock = Clock()
    interrupt = [True]

    def sleep(seconds: float) -> None:
        if interrupt.pop() if interrupt else False:
            raise KeyboardInterrupt
        clock.sleep(seconds)

    policy = seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1))
    sw = seawall.Seawall(policy, entrypoints=False, clock=clock, sleep=sleep)
    sw.call_sync(lambda: None, key="k")
    cooldown = sw.state_for("k", policy).cooldown
    cooldown.start(1.0)  # "429, Retry-After: 1": a learnt pace after it
    first = clock() + cooldown.reserve()  # a caller elsewhere holds the first turn
    with pytest.raises(KeyboardInterrupt):
        sw.call_sync(lambda: None, key="k")  # books the second turn, interrupted asleep
    sent: list[float] = []
    sw.call_sync(lambda: sent.append(clock()), key="k")
    after = clock() + cooldown.reserve()  # the turn after the one the third caller took
    # The third caller took the second turn: one step after the first, not two.
    assert sent[0] - first == pytest.approx(after - sent[0], rel=0.2)


def test_cancelled_callers_leave_the_upstream_to_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    """Callers whose own timeouts cancel them while they wait for paced turns: the next
    caller is sent within a turn or two, not after every abandoned turn (13 s before)."""
    seawall.testing.set_testing(False)  # real (virtual-time) waits

    async def scenario() -> tuple[float, int, int]:
        loop = asyncio.get_running_loop()
        monkeypatch.setattr(fake_llm, "time", loop.time_module())
        monkeypatch.setattr(seawall.llm, "time", loop.time_module())
        async with FakeProvider(rate=2.0, burst=2.0, flavor="openai") as fake:
            policy = seawall.Policy.for_llm(retry={"max_attempts": 1})
            sw = seawall.Seawall(routes={"127.0.0.1": policy}, entrypoints=False, clock=loop.time)
            url = fake.url + "/v1/chat/completions"
            async with sw.session() as session:

                async def one() -> int:
                    async with session.post(url, json={"model": "gpt-4o"}) as resp:
                        await resp.read()
                        return resp.status

                assert await one() == 200  # the headers: 2 per second, the pace in force
                assert await one() == 200

                async def impatient() -> int | None:
                    try:
                        async with asyncio.timeout(1.0):
                            return await one()
                    except TimeoutError:
                        return None

                async with asyncio.timeout(60):  # virtual seconds: a hang guard
                    results = await asyncio.gather(*(impatient() for _ in range(30)))
                    assert results.count(None) >= 25
                    started = loop.time()
                    assert await one() == 200
                    return loop.time() - started, fake.served, fake.rejected

    waited, served, rejected = virtual_time.run(scenario())
    assert waited < 1.2  # two turns at most at 0.9 x 2 per second (before: 14 s)
    assert rejected == 0, (served, rejected)  # and the turns given back made no burst
