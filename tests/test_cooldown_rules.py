"""The cooldown's turns, spacing and forgetting at their edges, on the test clock.

Written from ``make mutate``'s survivors: each test pins a rule of
``seawall.cooldown`` (or of the pace it learns, ``seawall.learnt_pace``) that a
small change broke without any other test noticing. Times are exact binary
fractions on a clock at 1000 s, so "exactly at" means exactly.
"""

from __future__ import annotations

import math

import pytest

import seawall
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


def test_a_fresh_key_and_a_doubling_pace_have_no_level() -> None:
    """``level`` is a measured ceiling's share: none before any 429, none while the pace
    still doubles from ``START_RATE`` (nothing measured), one after a measured cut."""
    clock = Clock()
    cooldown = Cooldown(clock)
    assert cooldown.level is None
    cooldown.start(None)  # no ceiling known: slow start, doubling
    assert cooldown.level is None
    fresh = Cooldown(clock)
    fresh.start(1 / 64)  # a refill interval: a ceiling of 64/s
    assert fresh.level == pytest.approx(LEVEL * 64.0)


def _learnt_then_stated() -> tuple[Clock, Cooldown]:
    """A key paced from a 429 with no headers (a learnt pace), then told its rate:
    10 requests per 5 s, none left now (2 requests per second)."""
    clock, cooldown = _paced()
    clock.now += 1 / 4
    cooldown.observe(RateInfo(limit=10, remaining=0, reset=5.0), success=True)
    assert cooldown.rate == pytest.approx(2.0)
    return clock, cooldown


def test_a_stated_rate_replaces_a_learnt_pace_paced_at_nine_tenths() -> None:
    """Headers stating the rate win over what the key had learnt: turns come at 90 % of
    the stated 2/s (1 / 1.8 s apart), the learnt pace no longer grows in."""
    clock, cooldown = _learnt_then_stated()
    waits = [cooldown.reserve() for _ in range(4)]
    step = 1 / (2.0 * 0.9)
    assert waits == pytest.approx([step, 2 * step, 3 * step, 4 * step])
    clock.now += 2.0  # a learnt pace would have doubled meanwhile
    assert cooldown.reserve() == pytest.approx(5 * step - 2.0)
    assert cooldown.rate == pytest.approx(2.0)


def test_turns_of_a_stated_rate_are_not_spaced_after_a_busy_loop() -> None:
    """The stated burst may go at once: ``spaced`` never delays callers of a key whose
    rate the headers state, even if the key had learnt a pace before."""
    _clock, cooldown = _learnt_then_stated()
    assert [cooldown.spaced() for _ in range(3)] == [0.0, 0.0, 0.0]


def test_first_headers_after_a_learnt_pace_set_the_schedule_from_the_bucket() -> None:
    """Turns booked ahead on a learnt pace are not the upstream's: the first headers say
    exactly how full the bucket is (here: full but for one), so the burst goes at once."""
    _clock, cooldown = _paced()
    for _ in range(20):
        cooldown.reserve()  # a second of turns booked ahead at ``START_RATE``
    assert cooldown.reserve() > 0.5
    cooldown.observe(RateInfo(limit=10, remaining=9, reset=5.0), success=True)
    assert cooldown.rate == pytest.approx(0.2)
    assert [cooldown.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]


def test_headers_that_state_no_rate_leave_a_learnt_pace_alone() -> None:
    """``remaining=0`` with no reset time states no rate: a learnt pace keeps its schedule
    (the count is a stated rate's to use), the next turn is not pushed back."""
    clock, cooldown = _paced()
    clock.now += 1.0  # nobody waits: the next turn is due now
    cooldown.observe(RateInfo(limit=10, remaining=0, reset=None), success=True)
    assert cooldown.reserve() == 0.0


def test_a_429_on_a_stated_rate_keeps_the_rate_and_empties_the_bucket() -> None:
    """The headers said the rate: a 429 does not start learning one (no cut), it says the
    bucket is empty now, so the next turn waits for one refill at the stated rate."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.observe(RateInfo(limit=10, remaining=5, reset=2.5), success=True)
    assert cooldown.rate == pytest.approx(2.0)
    assert cooldown.reserve() == 0.0  # room left in the bucket
    cooldown.start(None)
    assert cooldown.cuts == 0
    assert cooldown.level is None
    assert cooldown.rate == pytest.approx(2.0)
    assert cooldown.reserve() == pytest.approx(1 / (2.0 * 0.9))  # the bucket refills first


def test_a_stated_rate_is_forgotten_a_minute_after_its_last_headers() -> None:
    """docs/architecture.md: a header-stated rate expires 60 s after the last headers."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.observe(RateInfo(limit=10, remaining=0, reset=5.0), success=True)
    clock.now += 60.0 - 1 / 64
    cooldown.reserve()
    assert cooldown.rate == pytest.approx(2.0)
    clock.now += 1 / 32
    cooldown.reserve()
    assert cooldown.rate is None


def test_the_longest_wait_defaults_to_the_policys_retry_after_max() -> None:
    """A cooldown made without ``max_wait`` caps waits as a default policy does."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cap = seawall.RetryPolicy().retry_after_max
    cooldown.start(cap + 1.0)
    assert cooldown.reserve() == cap


@pytest.mark.parametrize("bad", [-0.5, -1.0, -2.0, math.nan])
def test_a_negative_or_nan_longest_wait_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="max_wait"):
        Cooldown(Clock(), max_wait=bad)


def test_remaining_counts_down_the_shared_wait_to_zero() -> None:
    clock = Clock()
    cooldown = Cooldown(clock)
    assert cooldown.remaining() == 0.0  # never cooled down
    cooldown.start(2.0)
    assert cooldown.remaining() == 2.0
    clock.now += 1.5
    assert cooldown.remaining() == 0.5
    clock.now += 1.0  # half a second past the end: nothing left, not less than nothing
    assert cooldown.remaining() == 0.0


@pytest.mark.parametrize("max_wait", [0.5, 1.0])
def test_a_short_longest_wait_still_paces_the_key(max_wait: float) -> None:
    """A ``max_wait`` of a second or less sets a high floor (one request per
    ``max_wait`` with ``SAFETY``), not an infinite one: callers after a 429 still
    take turns."""
    clock = Clock()
    cooldown = Cooldown(clock, max_wait=max_wait)
    assert cooldown.floor == pytest.approx(1 / (max_wait * 0.9))
    cooldown.start(None)
    assert cooldown.reserve() == 0.0
    assert cooldown.reserve() == pytest.approx(1 / START_RATE)
