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

from ._helpers import Clock


def _paced() -> tuple[Clock, Cooldown]:
    """A fresh key met a 429 that named no wait: paced at ``START_RATE`` from now."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(None)
    assert cooldown.rate == pytest.approx(START_RATE)
    return clock, cooldown


def _cut(wait: float) -> tuple[Clock, Cooldown]:
    """A fresh key met a 429 asking for ``wait`` s; the clock is at the pause's end."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(wait)
    clock.now = 1000.0 + wait
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


@pytest.mark.parametrize(("after", "kept"), [(10.0, True), (10.0 + 1 / 64, False)])
def test_a_learnt_pace_is_forgotten_after_learn_ttl_unused(after: float, kept: bool) -> None:
    """Nobody waited on it and no 429 came: kept at exactly ``LEARN_TTL``, not after; and
    ``LEARN_TTL`` is 10 s (docs/architecture.md)."""
    assert LEARN_TTL == 10.0
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
    for _ in range(10_000):  # bounded: some hundreds of turns
        if cooldown.reserve() > 3.0:  # turns booked 3 s ahead on the learnt pace
            break
    cooldown.observe(RateInfo(limit=10, remaining=9, reset=0.1), success=True)
    assert cooldown.rate == pytest.approx(10.0)
    assert [cooldown.reserve() for _ in range(9)] == [0.0] * 9


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


def test_a_slow_start_forgotten_starts_slow_again_at_the_next_429() -> None:
    """A doubling pace measured nothing: forgotten, it leaves no level behind, and the
    next 429 starts from ``START_RATE`` again, doubling."""
    clock, cooldown = _paced()
    clock.now += LEARN_TTL + 1.0
    assert cooldown.reserve() == 0.0
    assert cooldown.rate is None  # forgotten
    cooldown.start(None)
    assert cooldown.level is None
    assert cooldown.rate == pytest.approx(START_RATE)


def test_a_pause_longer_than_its_stated_rate_is_still_waited_out() -> None:
    """The stated rate expires (``HINT_TTL``) during a long pause a 429 asked for: callers
    still wait until the pause's end, to the end exactly, and not less than 0 after it."""
    clock = Clock()
    cooldown = Cooldown(clock, max_wait=300.0)
    cooldown.observe(RateInfo(limit=10, remaining=0, reset=5.0), success=True)
    cooldown.start(100.0)
    clock.now += 99.5
    assert cooldown.reserve() == 0.5
    assert cooldown.rate is None  # the stated rate was forgotten meanwhile
    clock.now += 1.0
    assert cooldown.reserve() == 0.0


def test_a_stated_burst_of_two_lets_two_go_at_once() -> None:
    """``limit=2`` with one left: one goes now, the next a step later; after an idle
    while, the bucket is full again and two go at once."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.observe(RateInfo(limit=2, remaining=1, reset=1.0), success=True)
    step = 1 / (1.0 * 0.9)
    assert [cooldown.reserve() for _ in range(2)] == pytest.approx([0.0, step])
    clock.now += 10.0
    assert [cooldown.reserve() for _ in range(3)] == pytest.approx([0.0, 0.0, step])


def test_a_stated_limit_of_one_never_lets_two_go_at_once() -> None:
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.observe(RateInfo(limit=1, remaining=0, reset=1.0), success=True)
    clock.now += 10.0  # idle: the bucket holds its one request again
    step = 1 / (1.0 * 0.9)
    assert [cooldown.reserve() for _ in range(2)] == pytest.approx([0.0, step])


@pytest.mark.parametrize("seconds", [-0.5, -1.0, -3.0])
def test_a_429_asking_for_a_negative_wait_is_ignored(seconds: float) -> None:
    """Nonsense from the server: no pause, and no pace started from it either."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(seconds)
    assert cooldown.rate is None
    assert cooldown.cuts == 0
    assert cooldown.reserve() == 0.0


def test_a_429_before_the_hold_ends_cuts_to_the_admitted_rate_even_with_a_queue() -> None:
    """Callers queued for turns mean the pace itself met a 429 only while it probes past
    its level, after ``HOLD``. Before that, a 429 cuts to what the upstream admitted."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(0.01)  # a ceiling of 100/s: the level is 97/s
    for _ in range(50):  # 5 s at 10 calls/s: at the level, not probing yet
        clock.now += 0.1
        assert cooldown.reserve() == 0.0
        cooldown.sent()
        cooldown.observe(None, success=True)
    assert cooldown.reserve() > 0.0  # a second caller in that instant queues for its turn
    admitted = cooldown.admitted()
    assert admitted == pytest.approx(10.0, rel=0.2)
    cooldown.start(None)
    assert cooldown.level == pytest.approx(LEVEL * admitted)


def _succeed(clock: Clock, cooldown: Cooldown, count: int, every: float) -> None:
    for _ in range(count):
        clock.now += every
        cooldown.observe(None, success=True)


def test_the_admitted_rate_is_measured_from_a_quarter_of_a_second() -> None:
    """Five successes over exactly ``SAMPLE / 2`` seconds are a measure; less time is not."""
    clock, cooldown = _paced()
    _succeed(clock, cooldown, 5, 1 / 32)
    assert cooldown.admitted() is None  # 5 over 5/32 s: a burst, not a rate
    clock.now += 3 / 16 - 5 / 32
    assert cooldown.admitted() is None  # nor over 3/16 s
    clock.now += 1 / 16
    assert cooldown.admitted() == 20.0


def test_during_its_rise_a_learnt_pace_follows_its_curve_whatever_was_admitted() -> None:
    """The admitted rate caps growth past the level only: a pace rising back to its level
    after a cut is not lifted to the level, nor cut, by a low admitted rate."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(1 / 128)  # a refill interval: a ceiling of 128/s
    base = LEVEL * 128.0
    clock.now = 1000.0 + 1 / 128  # the pause's end: the rise starts here
    _succeed(clock, cooldown, 8, 1 / 16)  # 16/s admitted: far below the pace
    assert cooldown.admitted() == pytest.approx(16.0)
    cooldown.reserve()
    grown = 0.5
    assert cooldown.rate == pytest.approx(base * (1 - (1 - 0.9) * (1 - grown / 3.0) ** 3))


def test_a_refill_interval_of_exactly_a_tenth_of_a_second_bounds_the_ceiling() -> None:
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(0.1)
    assert cooldown.level == pytest.approx(LEVEL * 10.0)


def test_a_refill_interval_below_the_admitted_rate_lowers_the_ceiling() -> None:
    """A 429 with a precise wait (``retry-after-ms``) while the key took 16/s: a wait of
    1/12 s is a bucket refilling at 12/s (not a fixed window's end, which would say far
    less than half the admitted rate): the ceiling is 12/s, not the 16/s admitted."""
    clock, cooldown = _cut(1 / 128)
    _succeed(clock, cooldown, 32, 1 / 16)  # 2 s at 16/s
    admitted = cooldown.admitted()
    assert admitted is not None
    assert 12.0 < admitted < 24.0  # (measured over the last samples: 18/s here)
    cooldown.start(1 / 12)
    assert cooldown.level == pytest.approx(LEVEL * 12.0)


def test_a_429_sent_exactly_as_the_pause_ended_is_news() -> None:
    """``sent_at`` before the end of the last cut's pause: old news; at its end: a 429 of
    the new pace, which cuts."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(0.5)
    assert cooldown.cuts == 1
    ended = clock.now + 0.5
    clock.now += 1.0
    cooldown.start(None, sent_at=ended - 1 / 64)
    assert cooldown.cuts == 1
    cooldown.start(None, sent_at=ended)
    assert cooldown.cuts == 2


@pytest.mark.parametrize(("interval", "cuts"), [(1 / 96, True), (1 / 64, True), (1 / 128, False)])
def test_an_old_429s_refill_interval_still_cuts_when_below_the_ceiling(
    interval: float, cuts: bool
) -> None:
    """A 429 sent before the last cut is old news, except its refill interval: one below
    the ceiling the pace levels from (here 100/s) still lowers it; one above does not."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(0.01)
    assert cooldown.level == pytest.approx(LEVEL * 100.0)
    clock.now += 1.0
    cooldown.start(interval, sent_at=1000.0)
    assert cooldown.cuts == (2 if cuts else 1)
    if cuts:
        assert cooldown.level == pytest.approx(LEVEL / interval)


def test_a_measured_level_is_kept_for_exactly_a_minute_to_start_from() -> None:
    """Forgotten after ``LEARN_TTL``, a measured level still starts the next pace up to
    ``CEILING_TTL`` (60 s) after its cut's pause ended, not at 60 s."""
    for after, level in ((60.0 - 1 / 64, LEVEL * 128.0), (60.0, None)):
        clock, cooldown = _cut(1 / 128)
        clock.now += after
        cooldown.reserve()
        assert cooldown.rate is None  # forgotten
        cooldown.start(None)
        assert cooldown.level == (pytest.approx(level) if level else None)


def test_a_429_in_the_first_second_after_a_pause_is_never_taken_for_jitter() -> None:
    """Too soon to tell a stall from a limit: a 429 under a second after the pause cuts
    to what was admitted, though it was most of the level."""
    clock, cooldown = _cut(1 / 16)  # a ceiling of 16/s: the level is 15.52/s
    _succeed(clock, cooldown, 8, 1 / 16)  # half a second at 16/s
    cooldown.reserve()
    rate = cooldown.rate
    admitted = cooldown.admitted()
    assert rate is not None
    assert admitted is not None
    assert admitted >= 0.85 * LEVEL * 16.0
    cooldown.start(None)
    assert cooldown.level == pytest.approx(LEVEL * min(admitted, rate))


def _stall_429_kept_the_level(
    clock: Clock, cooldown: Cooldown, level: float, per_second: int = 16
) -> bool:
    """Successes at ``per_second`` for exactly 1 s (the least for a stall to be told from a
    limit) since the pause, on a pace levelled at ``level`` (most of it admitted), then a
    429 naming no wait: whether it was taken for the host's jitter (level kept)."""
    _succeed(clock, cooldown, per_second, 1 / per_second)
    admitted = cooldown.admitted()
    assert admitted is not None
    assert admitted >= 0.85 * level
    cooldown.start(None)
    assert cooldown.level is not None
    return cooldown.level == pytest.approx(level, rel=1e-9)


def test_a_stall_after_a_refill_interval_cut_is_forgiven_once() -> None:
    """The pace levelled from a refill interval (16/s), not from a forgiven 429: the first
    429 a stall causes there keeps the level; the next one cuts."""
    clock, cooldown = _cut(1 / 16)
    assert _stall_429_kept_the_level(clock, cooldown, LEVEL * 16.0)
    assert not _stall_429_kept_the_level(clock, cooldown, LEVEL * 16.0)


def test_a_stall_after_starting_from_a_remembered_level_is_forgiven() -> None:
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(1 / 16)
    clock.now += LEARN_TTL + 1.0
    cooldown.reserve()
    assert cooldown.rate is None  # forgotten; its level is remembered
    cooldown.start(None)  # starts from it
    assert cooldown.level == pytest.approx(LEVEL * 16.0)
    assert _stall_429_kept_the_level(clock, cooldown, LEVEL * 16.0)


def test_a_success_answered_exactly_as_the_pause_ends_counts() -> None:
    """Successes answered during the pause were sent before the cut and do not count;
    one answered at the pause's very end does."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(0.5)
    clock.now = 1000.25
    cooldown.observe(None, success=True)  # during the pause: not counted
    clock.now = 1000.5
    cooldown.observe(None, success=True)
    _succeed(clock, cooldown, 4, 1 / 16)
    assert cooldown.admitted() == pytest.approx(5 / 0.25)


def test_four_successes_are_no_measure_five_are() -> None:
    clock, cooldown = _paced()
    _succeed(clock, cooldown, 4, 1 / 4)
    assert cooldown.admitted() is None
    _succeed(clock, cooldown, 1, 1 / 4)
    assert cooldown.admitted() == pytest.approx(5 / 1.25)


def test_a_learnt_pace_holds_its_level_fifteen_seconds_then_probes_upward() -> None:
    """Level from 3 s to 15 s after the pause (``RISE``, ``HOLD``), then the cubic probe:
    3 % above the level 8 s later (``PROBE_STEP`` at ``PROBE_AT``)."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(1 / 128)
    level = LEVEL * 128.0
    ended = 1000.0 + 1 / 128
    for grown in (3.0, 8.0, 13.0, 15.0):
        clock.now = ended + grown
        cooldown.reserve()  # a caller: the pace is in use, not forgotten
        assert cooldown.rate == pytest.approx(level, rel=1e-9)
    clock.now = ended + 19.0
    cooldown.reserve()
    clock.now = ended + 23.0
    cooldown.reserve()
    assert cooldown.rate == pytest.approx(level * 1.03, rel=1e-9)


def test_a_precise_wait_far_below_the_admitted_rate_is_a_windows_end_not_a_refill() -> None:
    """A 429 asking for 0.1 s while the key took over twice 10/s: a fixed window ending,
    which says nothing of the rate; the ceiling is what was admitted, not 10/s."""
    clock, cooldown = _cut(1 / 128)
    _succeed(clock, cooldown, 48, 1 / 24)  # 2 s at 24/s
    admitted = cooldown.admitted()
    assert admitted is not None
    assert 20.0 < admitted <= 30.0
    cooldown.reserve()
    rate = cooldown.rate
    assert rate is not None
    cooldown.start(0.1)
    assert cooldown.level == pytest.approx(LEVEL * min(admitted, rate))


def test_a_429_too_soon_to_measure_halves_a_slow_start() -> None:
    """Too few answers to measure: half the pace surely fitted; it doubles from there,
    carefully."""
    clock, cooldown = _paced()
    clock.now += 0.25
    cooldown.reserve()
    rate = cooldown.rate
    assert rate is not None
    cooldown.start(None)
    assert cooldown.rate == pytest.approx(rate / 2)


def test_a_slow_start_held_back_by_few_answers_is_halved_at_its_first_429() -> None:
    """A slow start the upstream answered only 4/s of: the pace stayed at ``START_RATE``
    (never far above what was admitted); its 429 halves it, more than the admitted."""
    clock, cooldown = _paced()
    _succeed(clock, cooldown, 6, 1 / 4)
    cooldown.reserve()
    assert cooldown.rate == pytest.approx(START_RATE)
    cooldown.start(None)
    assert cooldown.rate == pytest.approx(START_RATE / 2)


def test_a_stall_after_an_old_429s_refill_interval_cut_is_forgiven() -> None:
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(0.01)
    clock.now += 1.0
    cooldown.start(1 / 64, sent_at=1000.0)  # old news, but its refill interval cuts
    assert cooldown.level == pytest.approx(LEVEL * 64.0)
    clock.now = cooldown.until  # the pause it asked for has ended
    assert _stall_429_kept_the_level(clock, cooldown, LEVEL * 64.0, per_second=64)


def test_a_stall_after_a_careful_doubling_levelled_off_is_forgiven() -> None:
    """Slow start, a measured 429 (careful doubling from what fitted), a second one (the
    pace levels off): the first stall after that keeps the level."""
    clock, cooldown = _paced()
    _succeed(clock, cooldown, 8, 1 / 16)
    cooldown.start(None)  # from slow start to careful doubling
    assert cooldown.level is None
    _succeed(clock, cooldown, 8, 1 / 16)
    cooldown.start(None)  # levelled off (CUBIC)
    level = cooldown.level
    assert level is not None
    assert _stall_429_kept_the_level(clock, cooldown, level)


def test_a_precise_wait_of_exactly_half_the_admitted_rate_is_a_refill_interval() -> None:
    """1 / wait at exactly half the admitted rate still counts as a refill interval."""
    clock, cooldown = _cut(1 / 128)
    _succeed(clock, cooldown, 16, 1 / 32)
    assert cooldown.admitted() == 32.0
    cooldown.start(1 / 16)
    assert cooldown.level == pytest.approx(LEVEL * 16.0)


def test_a_pace_probing_past_its_level_stays_at_it_when_little_was_admitted() -> None:
    """Past its level a learnt pace stays within twice what was admitted: at 4/s admitted
    (a cap of 8/s, under a level of 9.7/s) it does not grow past the level, 40 s on."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(0.1)  # a ceiling of 10/s
    level = LEVEL * 10.0
    clock.now = 1000.0 + 0.125
    for _ in range(160):  # 40 s at 4 calls/s, each sent at once
        clock.now += 0.25
        assert cooldown.reserve() == 0.0
        cooldown.sent()
        cooldown.observe(None, success=True)
    cooldown.reserve()
    assert cooldown.rate == pytest.approx(level)
