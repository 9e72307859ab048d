"""The cooldown's turns, spacing and forgetting at their edges, on the test clock.

Written from ``make mutate``'s survivors: each test pins a rule of
``seawall.cooldown`` (or of the pace it learns, ``seawall.learnt_pace``) that a
small change broke without any other test noticing. Times are exact binary
fractions on a clock at 1000 s, so "exactly at" means exactly.
"""

from __future__ import annotations

import pytest

from seawall.cooldown import HINT_TTL, LEARN_TTL, LEVEL, SPACING, START_RATE, Cooldown
from seawall.llm import RateInfo


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _paced() -> tuple[Clock, Cooldown]:
    """A fresh key met a 429 that named no wait: paced at ``START_RATE`` from now."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(None)
    assert cooldown.rate == pytest.approx(START_RATE)
    return clock, cooldown


def test_callers_woken_together_leave_spaced_one_after_another() -> None:
    """Three callers whose turns came while the loop was busy all wake at one instant:
    they leave ``SPACING`` of a turn apart, the third two spacings after the first."""
    _clock, cooldown = _paced()
    step = 1.0 / START_RATE
    waits = [cooldown.spaced() for _ in range(3)]
    assert waits == pytest.approx([0.0, SPACING * step, 2 * SPACING * step])


def test_a_turn_that_comes_exactly_at_the_callers_deadline_is_not_taken() -> None:
    """It could not be sent before the deadline: refused, and left for the next caller."""
    _clock, twin = _paced()
    twin.reserve()
    exact = twin.reserve()  # the second turn's wait, on an identical cooldown
    assert exact > 0
    _clock, cooldown = _paced()
    assert cooldown.reserve() == 0.0
    assert cooldown.reserve(max_wait=exact) == exact  # refused: nothing booked
    assert cooldown.rejected == 1
    assert cooldown.reserve() == exact  # the same turn, for a caller who can wait


def test_a_stated_rate_holds_until_exactly_hint_ttl_after_its_headers() -> None:
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.observe(RateInfo(limit=10, remaining=0, reset=5.0), success=True)
    assert cooldown.rate == pytest.approx(2.0)
    clock.now += HINT_TTL
    cooldown.reserve()
    assert cooldown.rate == pytest.approx(2.0)
    clock.now += 1 / 64
    cooldown.reserve()
    assert cooldown.rate is None


@pytest.mark.parametrize(("after", "kept"), [(LEARN_TTL, True), (LEARN_TTL + 1 / 64, False)])
def test_a_learnt_pace_is_forgotten_after_learn_ttl_unused(after: float, kept: bool) -> None:
    """Nobody waited on it and no 429 came: kept at exactly ``LEARN_TTL``, not after."""
    clock, cooldown = _paced()
    clock.now += after
    cooldown.reserve()
    assert (cooldown.rate is not None) == kept


def test_a_429_asking_for_no_wait_still_paces_the_key() -> None:
    """``Retry-After: 0`` is a 429 all the same: no pause, but the key goes paced."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(0.0)
    assert cooldown.until == clock.now
    assert cooldown.rate == pytest.approx(START_RATE)


def test_a_caller_with_no_time_left_is_not_counted_as_refused() -> None:
    """``rejected`` counts turns that did not fit a deadline; a caller with none left asks
    nothing of the cooldown."""
    _clock, cooldown = _paced()
    assert cooldown.reserve(max_wait=0.0) == 0.0
    assert cooldown.rejected == 0


def test_the_admitted_rate_is_the_successes_per_second_since_the_pause() -> None:
    clock = Clock()
    cooldown = Cooldown(clock)
    assert cooldown.admitted() is None  # nothing learnt yet
    cooldown.start(None)
    for _ in range(10):
        clock.now += 1 / 16
        cooldown.observe(None, success=True)
    assert cooldown.admitted() == pytest.approx(16.0)


def test_a_429_while_nobody_queues_cuts_to_what_the_upstream_admitted() -> None:
    """Past its hold, a learnt pace probes upward; a 429 then cuts to the pace itself only
    when callers were queued for turns. Callers who all went at once (no wait) mean the
    pace was not what the upstream refused: it cuts to the admitted rate."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(0.01)  # a refill interval: a ceiling of 100/s
    level = cooldown.level
    assert level == pytest.approx(LEVEL * 100.0)
    for _ in range(170):  # 17 s at 10 calls/s, each sent at once: past HOLD, nobody waits
        clock.now += 0.1
        assert cooldown.reserve() == 0.0
        cooldown.sent()
        cooldown.observe(None, success=True)
    admitted = cooldown.admitted()
    assert admitted == pytest.approx(10.0, rel=0.2)
    cooldown.start(None)
    assert cooldown.level == pytest.approx(LEVEL * admitted)


def test_new_headers_for_a_known_rate_keep_the_turns_already_booked() -> None:
    """Only the first headers stating a rate set the schedule to now; later ones (with
    room left in the bucket) do not hand out again the turns callers already took."""
    clock = Clock()
    cooldown = Cooldown(clock)
    room = RateInfo(limit=10, remaining=9, reset=10.0)  # 1 request per second, 9 left
    cooldown.observe(room, success=True)
    waits = [cooldown.reserve() for _ in range(12)]
    assert waits[-1] > 0  # past the burst: booked ahead
    cooldown.observe(room, success=True)
    assert cooldown.reserve() > waits[-1]  # after the turns already booked
