"""The shared cooldown of one key: after a 429, everyone waits, then goes paced.

When one request learns that the upstream wants a pause (a 429), every other
request to the same key waits instead of hammering the upstream, or fails
fast when its deadline is shorter.

A plain shared "until" is not enough: when it passes, every waiting caller
fires at once and most of them meet another 429. So callers do not just wait,
they *reserve* a turn on one schedule per key (GCRA: a "theoretical arrival
time" that moves ``1 / pace`` seconds per turn). Turns never come before the
shared "until" (a server's ``Retry-After`` is always honoured in full), and
after it callers leave one paced turn at a time, never as a herd. The pace is
learnt, best first:

1. from rate-limit headers (``RateInfo``: OpenAI's ``x-ratelimit-*``,
   Anthropic's ``anthropic-ratelimit-*``), seen on every response of the key,
   successes included: the rate, the burst (``limit``) and what is left
   (``remaining`` less the requests still in flight, which the upstream may
   not have counted yet). Paced at ``SAFETY`` of that rate;
2. without such headers, from what the upstream accepts and refuses (AIMD
   with CUBIC growth, see docs/architecture.md). When a 429 arrives, the
   *admitted* rate (successes per second over about the last second since
   the last pause, never more than the pace we sent at) is the upstream's
   ceiling. The pace levels off at ``LEVEL`` of it: it restarts at ``CRUISE``
   of that level, rises back in ``RISE`` seconds, holds ``HOLD`` seconds,
   then probes upward on a cubic curve (``PROBE_STEP`` above the level
   ``PROBE_AT`` seconds later, faster and faster) until the next 429. Only
   one 429 per episode cuts: those of requests already in flight at the cut
   are old news, and a cut voids every turn booked before it (``cuts``: the
   engine books again). A precise wait of at most ``START_WAIT_MAX``
   (``retry-after-ms``) is a token bucket's refill interval, so ``1 / wait``
   bounds the ceiling. With no ceiling known (a fresh key, a whole-seconds
   ``Retry-After`` or none), the pace starts at ``START_RATE`` and doubles
   every ``SLOW_START_DOUBLING`` seconds (slow start); its first 429 bounds
   the ceiling from below, from which it doubles every ``CAREFUL_DOUBLING``
   seconds to the next. A pace nobody waited on for ``LEARN_TTL`` seconds is
   forgotten (the key goes back to the lean path); its level is kept
   ``CEILING_TTL`` seconds to start from next time. As with a stated rate, a
   caller whose turn would miss its deadline takes no turn and fails fast:
   sent unpaced at the end of the shared wait, such callers were the herd
   when a limit lifted. Callers woken late together by a busy event loop
   leave ``SPACING`` of a turn apart (``spaced``), not in one burst.

No server hint can take a key down: every wait the cooldown hands out is at
most ``max_wait`` (the policy's ``retry_after_max``), a pace never falls
below one request per ``max_wait`` (``floor``), a learnt pace always grows
back, and a rate learnt from headers is forgotten ``HINT_TTL`` seconds after
the last headers that stated it. A 200 saying "0 requests left, reset in
10^12 s" therefore costs callers at most one ``max_wait`` each, never a hang
or a key that refuses every call.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from seawall.llm import RateInfo

__all__ = [
    "CEILING_TTL",
    "CAREFUL_DOUBLING",
    "CAREFUL_SHARE",
    "CRUISE",
    "GROWTH_CAP",
    "GUESS_MAX_WAIT",
    "HINT_TTL",
    "LEARN_TTL",
    "HOLD",
    "JITTER_SHARE",
    "LEVEL",
    "PROBE_AT",
    "PROBE_STEP",
    "RECHECK",
    "RISE",
    "SAFETY",
    "SAMPLE",
    "SLOW_START_DOUBLING",
    "SPACING",
    "START_RATE",
    "START_WAIT_MAX",
    "Cooldown",
]

#: Share of a header-stated rate that pacing uses (clock differences cost no 429s).
SAFETY = 0.9

#: 429 waits (seconds) below this are precise (milliseconds); whole seconds are not.
GUESS_MAX_WAIT = 1.0

#: A precise wait up to this long is a token bucket's refill interval: ``rate <= 1 / wait``.
START_WAIT_MAX = 0.1

#: Share of the measured ceiling a learnt pace levels off at (the measure runs a little high:
#: it includes what the upstream's burst let through).
LEVEL = 0.97

#: Share of that level a learnt pace drops to right after a 429.
CRUISE = 0.9

#: Seconds a cut pace takes to rise back to its level (a concave curve: fast, then flat).
RISE = 3.0

#: Seconds after a cut during which a learnt pace stays at its level (no probing).
HOLD = 15.0

#: After ``HOLD`` the pace probes upward on a cubic curve: this much above its level
#: ``PROBE_AT`` seconds later (+10 % after 12 s, twice the level after 25 s).
PROBE_STEP = 0.03
PROBE_AT = 8.0

#: Seconds of one admitted-rate sample (two are kept), and the successes it needs.
SAMPLE = 0.5
MIN_SUCCESSES = 5

#: The first pace of a key with no ceiling known (slow start).
START_RATE = 20.0

#: Seconds in which a slow-start pace doubles (no ceiling known).
SLOW_START_DOUBLING = 0.5

#: Seconds in which a pace doubles when the ceiling is only a lower bound (after slow
#: start, or after a 429 with too few successes to measure).
CAREFUL_DOUBLING = 2.0

#: Share of a carefully doubling pace that surely fitted when it met a 429.
CAREFUL_SHARE = 0.8

#: A 429 under a level paced at for a second or more, with at least this share of the level
#: admitted, is taken for the host's jitter (a stall bunched the sends): the level is kept,
#: once; the next 429 cuts.
JITTER_SHARE = 0.85

#: Past its level, a learnt pace stays within this multiple of the admitted rate.
GROWTH_CAP = 2.0

#: Share of a turn's length that at least separates two paced sends: callers whose turns
#: came while the event loop was busy go out spaced, not in one burst.
SPACING = 0.8

#: Seconds a caller waiting for its turn sleeps at most before it looks again whether
#: a cut voided the turn (a pace learnt low in an outage must not keep it asleep).
RECHECK = 1.0

#: Seconds without a 429 and without a caller waiting after which a learnt pace is forgotten.
LEARN_TTL = 10.0

#: Seconds a measured ceiling is remembered to start the next pace from.
CEILING_TTL = 60.0

#: Seconds after the last rate headers after which the rate they stated is forgotten.
HINT_TTL = 60.0

#: ``max_wait`` when none is given: ``RetryPolicy.retry_after_max``'s default.
_DEFAULT_MAX_WAIT = 60.0

_GROWTH = PROBE_STEP / PROBE_AT**3  # CUBIC's C, relative to the level
_MAX_DOUBLINGS = 60.0  # 2**60: far above any rate, far below a float overflow
_NEVER = -math.inf  # one shared float: a fresh key's state stays small


class _Learning:
    """What a key learns from 429s without rate headers; made at its first 429 (a fresh key
    stays small: DESIGN's 2 KiB per key)."""

    __slots__ = (
        "answers",
        "base",
        "busy_at",
        "doubling",
        "forgave",
        "grow_from",
        "ok",
        "ok_prev",
        "ok_prev_since",
        "ok_since",
        "spaced",
        "stale_until",
    )

    def __init__(self) -> None:
        self.base = 0.0  # the level (or the pace the doubling starts from)
        self.doubling = 0.0  # seconds per doubling while no ceiling is known (0: CUBIC)
        self.forgave = False  # the last 429 was taken for the host's jitter (level kept)
        self.grow_from = _NEVER  # when the pace started growing (the end of the last pause)
        self.busy_at = _NEVER  # the last time a caller had to wait for its turn
        self.spaced = 0.0  # no paced send before this (late wake-ups go spaced, not at once)
        # Attempts settled since the last cut, counted while they may be old news: the
        # first ``stale_until`` were in flight at the cut (small numbers: no allocation).
        self.answers = 0
        self.stale_until = 0
        self.ok = 0  # successes in the current sample (since ``ok_since``)
        self.ok_since = _NEVER
        # ... and in the one before, since ``ok_prev_since`` (the sample's old ``ok_since``:
        # a float object shared, not a span made anew; 24 B per key).
        self.ok_prev = 0
        self.ok_prev_since = _NEVER


class Cooldown:
    """When the key may be called again, and at what pace, on the engine's clock."""

    __slots__ = (
        "_clock",
        "_hinted_at",
        "_learning",
        "_tat",
        "burst",
        "cuts",
        "inflight",
        "max_wait",
        "rate",
        "rejected",
        "until",
    )

    def __init__(self, clock: Callable[[], float], max_wait: float = _DEFAULT_MAX_WAIT) -> None:
        if not max_wait >= 0:  # also refuses NaN
            msg = f"Cooldown(max_wait={max_wait!r}): give the longest wait in seconds, >= 0"
            raise ValueError(msg)
        self._clock = clock
        #: The longest wait handed out (the policy's ``retry_after_max``).
        self.max_wait = max_wait
        #: No turn before this (the latest wait a server asked for).
        self.until = 0.0
        #: The pace in force, requests per second (``None``: no pacing). From headers:
        #: the stated rate (paced at ``SAFETY`` of it); learnt: the pace itself.
        self.rate: float | None = None
        #: Most requests the upstream takes at once (its limit), once stated.
        self.burst = 1.0
        #: Attempts sent and not answered yet.
        self.inflight = 0
        #: Reservations refused because they did not fit a caller's deadline.
        self.rejected = 0
        #: How often a learnt pace was cut: turns booked before a cut are void (book again).
        self.cuts = 0
        self._tat = 0.0  # the schedule: when the next turn is due (before the burst allowance)
        self._hinted_at: float | None = None  # when headers last stated the rate (None: learnt)
        self._learning: _Learning | None = None

    @property
    def floor(self) -> float:
        """The lowest rate kept: one request per ``max_wait`` (with ``SAFETY``) at least."""
        return 1.0 / (self.max_wait * SAFETY) if self.max_wait > 0 else float("inf")

    @property
    def level(self) -> float | None:
        """The rate a learnt pace levels off at (``LEVEL`` of the ceiling), once measured."""
        learning = self._learning
        if learning is None or learning.doubling or not learning.base:
            return None
        return learning.base

    def remaining(self) -> float:
        """Seconds left until the shared "until" (0 when the key is not cooling down)."""
        left = self.until - self._clock()
        return left if left > 0 else 0.0

    def admitted(self) -> float | None:
        """Successes per second since the last pause, over about the last second or more.

        ``None`` while fewer than ``MIN_SUCCESSES`` were seen, or over less than
        ``SAMPLE / 2`` seconds (too short to tell a burst from a rate).
        """
        learning = self._learning
        if learning is None:
            return None
        count = learning.ok + learning.ok_prev
        total = self._clock() - learning.ok_prev_since
        if count < MIN_SUCCESSES or total < SAMPLE / 2:
            return None
        return count / total

    # --- the pace ---------------------------------------------------------------

    def _learnt(self, learning: _Learning, at: float, admitted: float | None) -> float:
        """The learnt pace at time ``at`` (a function of the time since the cut)."""
        grown = at - learning.grow_from
        if grown < 0:
            grown = 0.0
        base = learning.base
        doubling = learning.doubling
        if doubling:
            pace = base * 2.0 ** min(grown / doubling, _MAX_DOUBLINGS)
        elif grown < RISE:
            pace = base * (1.0 - (1.0 - CRUISE) * (1.0 - grown / RISE) ** 3)
        elif grown < HOLD:
            pace = base
        else:
            pace = base * (1.0 + _GROWTH * (grown - HOLD) ** 3)
        if admitted is not None:  # never far above what the upstream was seen to take
            cap = GROWTH_CAP * admitted
            if doubling and cap < START_RATE:
                cap = START_RATE  # a few answers a second are no measure of the ceiling
            if pace > cap and pace > base:
                pace = cap if cap > base else base
        return pace if pace > self.floor else self.floor

    def _refresh(self, now: float) -> float | None:
        """Expire the pace or let it grow; the pace in force now (``None``: none)."""
        if self.rate is None:
            return None
        hinted_at = self._hinted_at
        learning = self._learning
        if hinted_at is not None or learning is None:
            if hinted_at is None or now - hinted_at > HINT_TTL:
                self._forget()
                return None
            return self.rate
        if now - max(learning.grow_from, learning.busy_at, self.until, self._tat) > LEARN_TTL:
            self._forget()
            return None
        self.rate = self._learnt(learning, now, self.admitted())
        return self.rate

    def _forget(self) -> None:
        self.rate, self._hinted_at, self.burst = None, None, 1.0
        learning = self._learning
        if learning is not None and learning.doubling:
            learning.base = 0.0  # only a measured level is worth remembering

    def _step(self, at: float) -> float:
        """Seconds between two turns at time ``at``."""
        rate = self.rate
        assert rate is not None
        learning = self._learning
        if self._hinted_at is not None or learning is None:
            return 1.0 / (rate * SAFETY)
        return 1.0 / (self._learnt(learning, at, None) if at > self._clock() else rate)

    # --- before an attempt ----------------------------------------------------

    def reserve(self, max_wait: float | None = None) -> float:
        """Take a turn: the seconds to wait before sending (0: send now).

        :param max_wait: the most the caller can wait (its deadline). When the
            turn would come later, nothing is reserved and the (longer) wait
            is returned, so the caller can fail fast.
        """
        now = self._clock()
        until = self.until
        rate = self._refresh(now)
        if rate is None:
            wait = until - now
            wait = wait if wait > 0 else 0.0
        else:
            allowance = (self.burst - 1.0) * self._step(now) if self.burst > 1.0 else 0.0
            slot = max(self._tat - allowance, until, now)
            wait = slot - now
            if max_wait is None or wait < max_wait:
                self._tat = max(self._tat, slot) + self._step(slot)
                if wait > 0 and self._learning is not None:
                    self._learning.busy_at = now
        if wait > self.max_wait:
            wait = self.max_wait  # whatever the hints said or how far behind the pace is
        if max_wait is not None and wait >= max_wait > 0:
            self.rejected += 1
        return wait

    def spaced(self) -> float:
        """After a paced wait: seconds to wait more so that sends stay spaced (0: go now).

        Turns are booked ahead; when the event loop wakes several callers late
        and at once, they would reach the upstream as a burst that a small
        bucket refuses. Each takes the next spaced moment instead.
        """
        learning = self._learning
        if self.rate is None or self._hinted_at is not None or learning is None:
            return 0.0  # unpaced, or a stated burst that may go at once
        now = self._clock()
        spaced = learning.spaced
        wait = spaced - now if spaced > now else 0.0
        learning.spaced = now + wait + SPACING * self._step(now)
        return wait

    def sent(self) -> None:
        """An attempt is going out now."""
        self.inflight += 1

    # --- after an attempt -----------------------------------------------------

    def settle(self) -> None:
        """An attempt ended without telling us anything (an error, a cancellation)."""
        if self.inflight > 0:
            self.inflight -= 1
        learning = self._learning
        if learning is not None and learning.answers <= learning.stale_until:
            learning.answers += 1  # (beyond, the count no longer matters)

    def observe(self, info: RateInfo | None, *, success: bool) -> None:
        """An attempt was answered; ``info`` is what its rate-limit headers said."""
        self.settle()
        learning = self._learning
        if success and learning is not None and self.rate is not None:
            # Measured only while paced (the run path): the admitted rate.
            now = self._clock()
            span = now - learning.ok_since
            if span >= 0:  # (answered during the pause: sent before the cut)
                if span >= SAMPLE and learning.ok >= MIN_SUCCESSES:
                    learning.ok_prev, learning.ok_prev_since = learning.ok, learning.ok_since
                    learning.ok, learning.ok_since = 0, now
                learning.ok += 1
        if info is None:
            return
        now = self._clock()
        rate = info.rate
        if rate is not None:
            known = self._hinted_at is not None and self.rate is not None
            self.rate, self._hinted_at = max(rate, self.floor), now
            self.burst = float(max(1, info.limit))
            if not known:  # the headers say exactly how full the bucket is
                self._tat = now
        if self.rate is not None and self._hinted_at is not None:
            self._empty(now, float(info.remaining - self.inflight))

    def _empty(self, now: float, left: float = 0.0) -> None:
        """The upstream's bucket holds ``left`` requests now: no earlier turns than that."""
        if self.rate is not None:
            self._tat = max(self._tat, now + (self.burst - left) * self._step(now))

    def start(self, seconds: float | None, sent_at: float | None = None) -> None:
        """A 429 came back, asking to wait ``seconds`` (``None``: it did not say).

        Every caller waits that long from now (a later end wins, an earlier one
        never shortens it), then goes paced; see the module's doc for the pace.
        ``sent_at`` (the engine's clock) is when the refused attempt was sent: one
        sent before the last cut's pause ended is old news, already accounted for
        (the lean paths do not count ``inflight``, so without it every 429 of a
        fresh key's first burst would cut the pace again, down to the floor).
        """
        if seconds is not None and not seconds >= 0:  # a NaN or negative wait: nonsense
            return
        now = self._clock()
        if seconds is not None:
            self.until = max(self.until, now + min(seconds, self.max_wait))
        rate = self._refresh(now)
        if rate is not None and self._hinted_at is not None:
            self._empty(now)  # the headers said the rate: the bucket is empty now
            return
        learning = self._learning
        if learning is None:
            learning = self._learning = _Learning()
        admitted = self.admitted()
        bound = None
        if (
            seconds is not None
            and 0 < seconds <= START_WAIT_MAX
            and (admitted is None or 1.0 / seconds >= admitted / 2)  # a fixed window's end: no
        ):
            bound = 1.0 / seconds  # a token bucket's refill interval bounds its rate
        stale = sent_at is not None and sent_at < learning.grow_from
        if rate is not None and (stale or 0 < learning.answers <= learning.stale_until):
            # Sent before the last cut, which accounted for it; a refill interval still counts.
            if bound is not None and not learning.doubling and bound < learning.base / LEVEL:
                self._cut(learning, now, bound, 0.0)
            return
        if rate is None:  # a fresh key, or a pace forgotten
            if bound is not None:
                self._cut(learning, now, bound, 0.0)
            elif learning.base and now - learning.grow_from < CEILING_TTL:
                self._cut(learning, now, learning.base / LEVEL, 0.0)  # from the last level
            else:
                self._cut(learning, now, START_RATE, SLOW_START_DOUBLING)
        elif admitted is None:
            # Too few answers since the last pause to measure: half the pace surely fits.
            self._cut(learning, now, rate / 2, CAREFUL_DOUBLING)
        elif learning.doubling:
            # A doubling pace ran past the ceiling. What was admitted lags a growing pace;
            # the pace one doubling ago (slow start), or most of the pace (careful) fitted.
            slow = learning.doubling == SLOW_START_DOUBLING
            floor = rate / 2 if slow else rate * CAREFUL_SHARE
            self._cut(learning, now, max(floor, admitted), CAREFUL_DOUBLING if slow else 0.0)
        else:
            # Probing past the level with callers queued for turns: the pace itself met the
            # 429 (what was admitted lags it when the event loop is busy). Else what the
            # upstream took, no more than we sent (AWS: min(measured, current)); a 429 at
            # the level itself (or on the way to it) says the level was too high.
            probing = now - learning.grow_from >= HOLD and now - learning.busy_at < SAMPLE
            if (
                not probing
                and not learning.forgave
                and bound is None
                and now - learning.grow_from >= 2 * SAMPLE
                and admitted >= JITTER_SHARE * learning.base
            ):
                # At or under a level the upstream took for seconds, and still took most of
                # lately: a stall of the host bunched sends past the bucket. The pause is
                # honoured; the level is kept (cutting it to what a stall let through
                # ratchets it down at every stall).
                self._cut(learning, now, learning.base / LEVEL, 0.0)
                learning.forgave = True  # not twice in a row: a true drop would cost a pause each
                return
            ceiling = rate if probing else min(admitted, rate)
            self._cut(learning, now, ceiling if bound is None else min(ceiling, bound), 0.0)

    def _cut(self, learning: _Learning, now: float, ceiling: float, doubling: float) -> None:
        """Pace from ``ceiling`` after the pause: doubling, or levelling off below it (CUBIC)."""
        learning.doubling = doubling
        learning.forgave = False
        learning.base = max(ceiling if doubling else ceiling * LEVEL, self.floor)
        learning.grow_from = start = max(now, self.until)  # no growth while paused
        self.cuts += 1
        self._tat = start  # turns booked before are void: their callers book again
        self._hinted_at, self.burst = None, 1.0
        self.rate = self._learnt(learning, start, None)
        learning.answers, learning.stale_until = 0, self.inflight
        # Measure afresh after the pause: what came before was another pace.
        learning.ok, learning.ok_prev = 0, 0
        learning.ok_since = learning.ok_prev_since = start
