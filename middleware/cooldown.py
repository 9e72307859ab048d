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
   with CUBIC growth): ``seawall.learnt_pace`` holds that part and says how.
   As with a stated rate, a caller whose turn would miss its deadline takes
   no turn and fails fast: sent unpaced at the end of the shared wait, such
   callers were the herd when a limit lifted. Callers woken late together by a busy event loop
   leave ``SPACING`` of a turn apart (``spaced``), not in one burst.

No server hint can take a key down: every wait the cooldown hands out is at
most ``max_wait`` (the policy's ``retry_after_max``), a pace never falls
below one request per ``max_wait`` (``floor``), a learnt pace always grows
back, and a rate learnt from headers is forgotten ``HINT_TTL`` seconds after
the last headers that stated it. A 200 saying "0 requests left, reset in
10^12 s" therefore costs callers at most one ``max_wait`` each, never a hang.
Nor a key that refuses most calls when every answer says so: requests that
succeed more than such headers allow prove them wrong (``seawall.llm.hints``),
and the key is then paced as one without headers, from its 429s, until
``HINT_TTL`` seconds after the last proof (``observe`` says when to warn).
"""

from __future__ import annotations

from collections.abc import Callable

from seawall.learnt_pace import (
    CROWDED,
    CRUISE,
    HOLD,
    LEARN_TTL,
    LEVEL,
    SLOW_START_DOUBLING,
    START_RATE,
    START_WAIT_MAX,
    LearntPace,
)
from seawall.llm import RateInfo
from seawall.llm.hints import RateHints
from seawall.spare_turns import SpareTurns

# The learnt pace's constants that others import from here, where they were first.
__all__ = [
    "CRUISE",
    "HINT_TTL",
    "HOLD",
    "LEARN_TTL",
    "LEVEL",
    "RECHECK",
    "SAFETY",
    "SLOW_START_DOUBLING",
    "SPACING",
    "START_RATE",
    "START_WAIT_MAX",
    "Cooldown",
]

#: Share of a header-stated rate that pacing uses (clock differences cost no 429s).
SAFETY = 0.9

#: Share of a turn's length that at least separates two paced sends: callers whose turns
#: came while the event loop was busy go out spaced, not in one burst.
SPACING = 0.8

#: Seconds a caller waiting for its turn sleeps at most before it looks again whether
#: a cut voided the turn (a pace learnt low in an outage must not keep it asleep).
RECHECK = 1.0

#: Seconds after the last rate headers after which the rate they stated is forgotten.
HINT_TTL = 60.0

#: ``max_wait`` when none is given: ``RetryPolicy.retry_after_max``'s default.
_DEFAULT_MAX_WAIT = 60.0


class Cooldown:
    """When the key may be called again, and at what pace, on the engine's clock."""

    __slots__ = (
        "_clock",
        "_hinted_at",
        "_hints",
        "_learning",
        "_spare",
        "_tat",
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
        #: Attempts sent and not answered yet.
        self.inflight = 0
        #: Reservations refused because they did not fit a caller's deadline.
        self.rejected = 0
        #: How often a learnt pace was cut: turns booked before a cut are void (book again).
        self.cuts = 0
        self._tat = 0.0  # the schedule: when the next turn is due (before the burst allowance)
        self._hinted_at: float | None = None  # when headers last stated the rate (None: learnt)
        self._learning: LearntPace | None = None
        self._hints: RateHints | None = None  # the stated limit, headers on test
        self._spare: SpareTurns | None = None  # turns whose callers left before them

    @property
    def floor(self) -> float:
        """The lowest rate kept: one request per ``max_wait`` (with ``SAFETY``) at least."""
        return 1.0 / (self.max_wait * SAFETY) if self.max_wait > 0 else float("inf")

    @property
    def burst(self) -> float:
        """Most requests the upstream takes at once (its limit), once stated (else 1)."""
        hints = self._hints
        return 1.0 if hints is None else hints.burst

    @burst.setter
    def burst(self, value: float) -> None:
        hints = self._hints
        if hints is None:
            if value == 1.0:
                return
            hints = self._hints = RateHints()
        hints.burst = value

    @property
    def level(self) -> float | None:
        """The rate a learnt pace levels off at (``LEVEL`` of the ceiling), once measured."""
        learning = self._learning
        if learning is None or not learning.measured:
            return None
        return learning.base

    def remaining(self) -> float:
        """Seconds left until the shared "until" (0 when the key is not cooling down)."""
        left = self.until - self._clock()
        return left if left > 0 else 0.0

    def admitted(self) -> float | None:
        """Successes per second since the last pause (``LearntPace.admitted``; ``None``
        before the first 429 and while too few were seen)."""
        learning = self._learning
        return None if learning is None else learning.admitted(self._clock())

    # --- the pace ---------------------------------------------------------------

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
        self.rate = learning.pace(now, self.admitted(), self.floor)
        return self.rate

    def _learns(self) -> bool:
        """The pace in force is the one learnt here (no rate headers, no fleet pace)."""
        return self._hinted_at is None

    def _forget(self) -> None:
        self.rate, self._hinted_at, self.burst = None, None, 1.0
        learning = self._learning
        if learning is not None:
            learning.early_misses = 0  # the next episode may probe early again
            if not learning.measured:
                learning.base = 0.0  # only a measured level is worth remembering

    def _step(self, at: float) -> float:
        """Seconds between two turns at time ``at``."""
        rate = self.rate
        assert rate is not None
        learning = self._learning
        if self._hinted_at is not None or learning is None:
            return 1.0 / (rate * SAFETY)
        now = self._clock()
        return 1.0 / (learning.pace(at, None, self.floor, now) if at > now else rate)

    # --- before an attempt ----------------------------------------------------

    def reserve(self, max_wait: float | None = None, *, again: bool = False) -> float:
        """Take a turn: the seconds to wait before sending (0: send now).

        :param max_wait: the most the caller can wait (its deadline). When the
            turn would come later, nothing is reserved and the (longer) wait
            is returned, so the caller can fail fast.
        :param again: the caller books again (a cut or a longer pause voided
            its turn): not a new turn asked for, so not counted as demand.
        """
        now = self._clock()
        until = self.until
        rate = self._refresh(now)
        if rate is None:
            wait = until - now
            wait = wait if wait > 0 else 0.0
        else:
            burst = self.burst
            allowance = (burst - 1.0) * self._step(now) if burst > 1.0 else 0.0
            slot = max(self._tat - allowance, until, now)
            given = None
            if self._spare is not None:  # a turn given back, if one comes sooner and fits
                latest = slot if max_wait is None else min(slot, now + max_wait)
                given = self._spare.take(self.cuts, max(now, until), latest)
                slot = slot if given is None else given
            wait = slot - now
            learning = self._learning
            if learning is not None and not again:
                learning.asking(now)
            if max_wait is None or wait < max_wait:
                if given is None:  # (a turn given back is on the schedule already)
                    self._tat = max(self._tat, slot) + self._step(slot)
                if wait > 0 and learning is not None:
                    learning.busy_at = now
            if (
                learning is not None
                and max_wait is not None
                and max_wait > 0  # (no time left: refused, but no measure of the queue)
                and slot - max(until, now) >= CROWDED * max_wait  # queued for turns, not the pause
                and self._learns()
                and learning.crowded(now, rate)  # demand outgrew a learnt pace: it probes early
            ):
                # Turns booked at the level are void: their callers book again on the probe's
                # rising pace (every RECHECK), or they would wait as long as before it.
                self.cuts += 1
                self._tat = max(now, until)
        if wait > self.max_wait:
            wait = self.max_wait  # whatever the hints said or how far behind the pace is
        if max_wait is not None and wait >= max_wait > 0:
            self.rejected += 1
        return wait

    def give_back(self, slot: float, cuts: int) -> None:
        """A caller leaves before its turn at ``slot``, booked when ``cuts`` was the count of
        cuts: the turn goes to the next caller (``seawall.spare_turns``), not to waste."""
        if cuts != self.cuts or self.rate is None or slot <= self._clock():
            return  # void already, unpaced, or passed
        step = self._step(slot)
        if self._tat - slot >= 1.5 * step:
            self._spare = SpareTurns.give(self._spare, cuts, slot)
        else:  # the last turn booked: the schedule ends there, or at free turns before it
            spare = self._spare
            self._tat = slot if spare is None else spare.end(cuts, slot, step)

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
        if learning is not None:
            learning.settled()

    def observe(
        self, info: RateInfo | None, *, success: bool, sent_at: float | None = None
    ) -> bool:
        """An attempt was answered; ``info`` is what its rate-limit headers said.

        :param sent_at: when the attempt was sent (the engine's clock), if known.
        :returns: ``True`` when this answer proved the key's rate headers wrong
            while they were believed (time to warn).
        """
        self.settle()
        learning = self._learning
        if success and learning is not None and self.rate is not None:
            learning.succeeded(self._clock(), sent_at, self.rate)  # measured while paced
        hints = self._hints
        if success and sent_at is not None and (hints is not None or info is not None):
            now = self._clock()
            if hints is None:
                hints = self._hints = RateHints()
            if hints.refutes(info, now, sent_at):
                return self._distrust(hints, now)
        if info is None:
            return False
        now = self._clock()
        if hints is not None and now < hints.distrust:
            return False  # proved wrong lately: the 429s say more
        rate = info.rate
        if rate is not None:
            known = self._hinted_at is not None and self.rate is not None
            self.rate, self._hinted_at = max(rate, self.floor), now
            self.burst = float(max(1, info.limit))
            if not known:  # the headers say exactly how full the bucket is
                self._tat = now
        if self.rate is not None and self._hinted_at is not None:
            self._empty(now, float(info.remaining - self.inflight))
        return False

    def _distrust(self, hints: RateHints, now: float) -> bool:
        """The key's rate headers were proved wrong: believe none for ``HINT_TTL`` seconds;
        ``True`` when they were believed until now."""
        believed = now >= hints.distrust
        hints.distrust = now + HINT_TTL
        if self._hinted_at is not None:  # turns booked on them are void: book again
            self._forget()
            self.cuts += 1
            self._tat = max(now, self.until)
        return believed

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
            learning = self._learning = LearntPace()
        cut = learning.after_429(now, seconds, rate, sent_at, self.inflight)
        if cut is not None:
            self._cut(learning, now, *cut)

    def _cut(
        self, learning: LearntPace, now: float, ceiling: float, doubling: float, forgave: bool
    ) -> None:
        """Pace from ``ceiling`` after the pause: doubling, or levelling off below it (CUBIC)."""
        start = max(now, self.until)  # no growth while paused
        learning.restart(start, ceiling, doubling, self.floor, self.inflight, forgave)
        self.cuts += 1
        self._tat = start  # turns booked before are void: their callers book again
        self._hinted_at, self.burst = None, 1.0
        self.rate = learning.pace(start, None, self.floor)
