"""The pace a cooldown learns from 429s when the upstream states no rate.

``seawall.cooldown`` paces a key after a 429. Without rate-limit headers the
pace is learnt from what the upstream accepts and refuses (AIMD with CUBIC
growth, see docs/architecture.md); this module is that part, on times the
cooldown passes in (no clock of its own).

When a 429 arrives, the *admitted* rate (successes per second over about the
last second since the last pause, never more than the pace we sent at) is the
upstream's ceiling. The pace levels off at ``LEVEL`` of it: it restarts at
``CRUISE`` of that level, rises back in ``RISE`` seconds, holds ``HOLD``
seconds, then probes upward on a cubic curve (``PROBE_STEP`` above the level
``PROBE_AT`` seconds later, faster and faster) until the next 429. Only one
429 per episode cuts: those of requests already in flight at the cut are old
news, and a cut voids every turn booked before it (the cooldown's ``cuts``:
the engine books again). A precise wait of at most ``START_WAIT_MAX``
(``retry-after-ms``) is a token bucket's refill interval, so ``1 / wait``
bounds the ceiling. With no ceiling known (a fresh key, a whole-seconds
``Retry-After`` or none), the pace starts at ``START_RATE`` and doubles every
``SLOW_START_DOUBLING`` seconds (slow start); its first 429 bounds the ceiling
from below, from which it doubles every ``CAREFUL_DOUBLING`` seconds to the
next. When turns are asked for faster than the pace (the demand) and a caller
would wait ``CROWDED`` of its time left for one, the limit may have lifted: a
level whose cut is ``EARLY_PROBE`` seconds old does not hold, it probes from
there, doubling every ``EARLY_DOUBLING`` seconds, never above ``EARLY_CAP``
times the demand; each early probe that meets the same ceiling makes the next
one wait ``EARLY_BACKOFF`` times as long, up to ``HOLD``; the level an early
probe's 429 sets is not kept past its own first 429 (``JITTER_SHARE``). A 429
answered within ``BUNCH`` of a turn after the answer before it, though sent a turn or
more later, was bunched with it by a host's stall: its pause is honoured, but the pace
and its clock are kept (``seawall.pace_samples`` tells). A pace nobody
waited on for ``LEARN_TTL`` seconds is forgotten (the key
goes back to the lean path); its level is kept ``CEILING_TTL`` seconds to
start from next time.
"""

from __future__ import annotations

from seawall.pace_samples import BUNCH, MIN_SUCCESSES, SAMPLE, PaceSamples
from seawall.pace_samples import NEVER as _NEVER

__all__ = [
    "BUNCH",
    "CAREFUL_DOUBLING",
    "CAREFUL_SHARE",
    "CEILING_TTL",
    "CROWDED",
    "CRUISE",
    "EARLY_BACKOFF",
    "EARLY_CAP",
    "EARLY_DOUBLING",
    "EARLY_PROBE",
    "EARLY_SAME",
    "GROWTH_CAP",
    "HOLD",
    "JITTER_SHARE",
    "LEARN_TTL",
    "LEVEL",
    "MIN_SUCCESSES",
    "PROBE_AT",
    "PROBE_STEP",
    "RISE",
    "SAMPLE",
    "SLOW_START_DOUBLING",
    "START_RATE",
    "START_WAIT_MAX",
    "LearntPace",
]

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

#: A caller that would wait this share of its time left (or more) for a turn: demand has
#: outgrown the pace, and its deadline refuses it if nothing changes.
CROWDED = 0.25

#: Seconds after a cut from which crowded callers start an early probe instead of the
#: ``HOLD``: the limit may have lifted, and only a probe can tell.
EARLY_PROBE = 1.0

#: Seconds in which an early probe doubles the pace (from the level; it marks the mode too:
#: no other doubling has this length).
EARLY_DOUBLING = 1.0

#: An early probe's pace stays within this multiple of the demand (turns asked for per
#: second): what it adds drains the queue, never as a herd (issue 16: 1.2x).
EARLY_CAP = 1.2

#: An early probe whose 429 shows a ceiling under this multiple of the old one met the same
#: limit: the next early probe waits ``EARLY_BACKOFF`` times as long after its cut.
EARLY_SAME = 1.1

#: How much longer each early probe that met the same limit makes the next one wait: 1, 4,
#: then ``HOLD`` seconds after a cut (where the level would start probing anyway).
EARLY_BACKOFF = 4.0

#: Early probes in a row that met the same limit, at most (the wait grows no more).
_EARLY_MISSES_MAX = 2

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

#: Seconds without a 429 and without a caller waiting after which a learnt pace is forgotten.
LEARN_TTL = 10.0

#: Seconds a measured ceiling is remembered to start the next pace from.
CEILING_TTL = 60.0

_GROWTH = PROBE_STEP / PROBE_AT**3  # CUBIC's C, relative to the level
_MAX_DOUBLINGS = 60.0  # 2**60: far above any rate, far below a float overflow


class LearntPace(PaceSamples):
    """What a key learns from 429s without rate headers; made at its first 429 (a fresh key
    stays small: DESIGN's 2 KiB per key)."""

    __slots__ = (
        "answers",
        "base",
        "busy_at",
        "doubling",
        "early_misses",
        "forgave",
        "grow_from",
        "spaced",
        "stale_until",
    )

    def __init__(self) -> None:
        super().__init__()
        self.base = 0.0  # the level (or the pace the doubling starts from)
        # Seconds per doubling while no ceiling is known, or while probing early (EARLY_DOUBLING);
        # 0: CUBIC around a level.
        self.doubling = 0.0
        self.early_misses = 0  # early probes in a row that met the same ceiling
        self.forgave = False  # the last 429 was taken for the host's jitter (level kept)
        self.grow_from = _NEVER  # when the pace started growing (the end of the last pause)
        self.busy_at = _NEVER  # the last time a caller had to wait for its turn
        self.spaced = 0.0  # no paced send before this (late wake-ups go spaced, not at once)
        # Attempts settled since the last cut, counted while they may be old news: the
        # first ``stale_until`` were in flight at the cut (small numbers: no allocation).
        self.answers = 0
        self.stale_until = 0

    def pace(
        self, at: float, admitted: float | None, floor: float, now: float | None = None
    ) -> float:
        """The learnt pace at time ``at`` (a function of the time since the cut), not below
        ``floor``; ``now``: the time of the measures, when ``at`` is later (a turn ahead)."""
        grown = at - self.grow_from
        if grown < 0:
            grown = 0.0
        base = self.base
        doubling = self.doubling
        if doubling:
            pace = base * 2.0 ** min(grown / doubling, _MAX_DOUBLINGS)
        elif grown < RISE:
            pace = base * (1.0 - (1.0 - CRUISE) * (1.0 - grown / RISE) ** 3)
        elif grown < HOLD:
            pace = base
        else:
            pace = base * (1.0 + _GROWTH * (grown - HOLD) ** 3)
        if doubling == EARLY_DOUBLING:  # serve the demand and drain the queue, never a herd
            demand = self.demand(at if now is None or now > at else now)
            if demand is None:  # too few turns asked for to measure: nothing to probe for
                pace = base
            elif pace > EARLY_CAP * demand:
                pace = max(EARLY_CAP * demand, base)
        if admitted is not None:  # never far above what the upstream was seen to take
            cap = GROWTH_CAP * admitted
            if doubling and cap < START_RATE:
                cap = START_RATE  # a few answers a second are no measure of the ceiling
            if pace > cap and pace > base:
                pace = cap if cap > base else base
        return pace if pace > floor else floor

    @property
    def measured(self) -> bool:
        """``base`` is a level measured from a ceiling (CUBIC, or probing early from it)."""
        return bool(self.base) and (not self.doubling or self.doubling == EARLY_DOUBLING)

    def crowded(self, now: float, rate: float) -> bool:
        """A caller would wait ``CROWDED`` of its time left or more for a turn.

        If the demand (``rate``: the pace in force) has outgrown the pace too, and
        the upstream's limit has lifted, holding the level refuses callers for
        nothing; only a probe can tell. A level whose cut is ``EARLY_PROBE``
        seconds old or more (``EARLY_BACKOFF`` times that per early probe in a
        row that met the same ceiling, at most ``HOLD``) probes from now on,
        doubling every ``EARLY_DOUBLING`` seconds; a pace still doubling does
        not. True when the probe starts now (turns booked at the level are
        worth booking again).
        """
        wait = EARLY_PROBE * EARLY_BACKOFF**self.early_misses
        if self.doubling or now - self.grow_from < (wait if wait < HOLD else HOLD):
            return False
        demand = self.demand(now)
        if demand is None or demand <= rate:
            return False  # a queue left by a pause, draining at the pace: no herd to make
        self.doubling = EARLY_DOUBLING
        self.grow_from = now  # the doubling's start (sends before it were at the level)
        return True

    def settled(self) -> None:
        """An attempt ended (answered or not)."""
        if self.answers <= self.stale_until:
            self.answers += 1  # (beyond, the count no longer matters)

    def after_429(
        self,
        now: float,
        seconds: float | None,
        rate: float | None,
        sent_at: float | None,
        inflight: int = 0,
    ) -> tuple[float, float, bool] | None:
        """A 429 came back (``seconds``: its wait, ``rate``: the pace in force, ``None`` when
        none; ``sent_at``: when the refused attempt was sent, when known; ``inflight``:
        attempts still unanswered).

        How to cut: ``(ceiling, doubling, forgave)`` for ``restart``; ``None``: no cut
        (old news, already accounted for).
        """
        admitted = self.admitted(now)
        stalled = self.answered(now, rate, sent_at)
        bound = None
        if (
            seconds is not None
            and 0 < seconds <= START_WAIT_MAX
            and (admitted is None or 1.0 / seconds >= admitted / 2)  # a fixed window's end: no
        ):
            bound = 1.0 / seconds  # a token bucket's refill interval bounds its rate
        stale = sent_at is not None and sent_at < self.grow_from
        if rate is not None and (stale or 0 < self.answers <= self.stale_until):
            # Sent before the last cut, which accounted for it; a refill interval still counts.
            if bound is not None and self.measured and bound < self.base / LEVEL:
                return bound, 0.0, False
            return None
        if rate is None:  # a fresh key, or a pace forgotten
            if bound is not None:
                return bound, 0.0, False
            if self.base and now - self.grow_from < CEILING_TTL:
                return self.base / LEVEL, 0.0, False  # from the last level
            return START_RATE, SLOW_START_DOUBLING, False
        if self.doubling == EARLY_DOUBLING:
            # An early probe met the limit: what the upstream took, no more than we sent.
            old = self.base / LEVEL
            ceiling = old if admitted is None else min(admitted, rate)
            if bound is not None and bound < ceiling:
                ceiling = bound
            same = ceiling < EARLY_SAME * old
            self.early_misses = min(self.early_misses + 1, _EARLY_MISSES_MAX) if same else 0
            # `forgave` set: the level this sets was measured on the probe's way up, with
            # what the bucket had stored meanwhile, and never held; its first 429 cuts
            # (keeping it once cost one more pause per early probe).
            return ceiling, 0.0, True
        if (
            stalled
            and bound is None
            and not self.doubling  # a level measured (a doubling pace finds one first)
            and admitted is not None
            and admitted >= JITTER_SHARE * rate  # (the pace in force: it never runs away)
            and now - self.grow_from >= 2 * SAMPLE
        ):
            # Answered together with the answer before it, which was sent a turn or more
            # earlier: a host's stall bunched them past the bucket, whatever the pace.
            # The pause is honoured (the cooldown moved "until"); the pace and its clock
            # are kept (it does not grow while paused), so a probe goes on and stalls do
            # not ratchet the level down. Measured afresh after the pause.
            end = now + (seconds or 0.0)
            if self.ok_since < end:  # (once for the 429s of one bunch)
                self.grow_from += end - now
                self.measure_from(end)
                self.answers, self.stale_until = 0, inflight  # the rest of it: old news
            return None
        if admitted is None:
            # Too few answers since the last pause to measure: half the pace surely fits.
            return rate / 2, CAREFUL_DOUBLING, False
        if self.doubling:
            # A doubling pace ran past the ceiling. What was admitted lags a growing pace;
            # the pace one doubling ago (slow start), or most of the pace (careful) fitted.
            slow = self.doubling == SLOW_START_DOUBLING
            floor = rate / 2 if slow else rate * CAREFUL_SHARE
            return max(floor, admitted), CAREFUL_DOUBLING if slow else 0.0, False
        # Probing past the level with callers queued for turns: the pace itself met the
        # 429 (what was admitted lags it when the event loop is busy). Else what the
        # upstream took, no more than we sent (AWS: min(measured, current)); a 429 at
        # the level itself (or on the way to it) says the level was too high.
        probing = now - self.grow_from >= HOLD and now - self.busy_at < SAMPLE
        if (
            not probing
            and not self.forgave
            and bound is None
            and now - self.grow_from >= 2 * SAMPLE
            and admitted >= JITTER_SHARE * self.base
        ):
            # At or under a level the upstream took for seconds, and still took most of
            # lately: a stall of the host bunched sends past the bucket. The pause is
            # honoured; the level is kept (cutting it to what a stall let through
            # ratchets it down at every stall). Not twice in a row: a true drop would
            # cost a pause each.
            return self.base / LEVEL, 0.0, True
        ceiling = rate if probing else min(admitted, rate)
        return (ceiling if bound is None else min(ceiling, bound)), 0.0, False

    def restart(
        self,
        start: float,
        ceiling: float,
        doubling: float,
        floor: float,
        inflight: int,
        forgave: bool = False,
    ) -> None:
        """Pace from ``ceiling`` from ``start`` (the end of the pause): doubling, or levelling
        off below it (CUBIC); ``inflight`` attempts are old news when they come back."""
        self.doubling = doubling
        self.forgave = forgave
        self.base = max(ceiling if doubling else ceiling * LEVEL, floor)
        self.grow_from = start  # no growth while paused
        self.answers, self.stale_until = 0, inflight
        self.measure_from(start)
