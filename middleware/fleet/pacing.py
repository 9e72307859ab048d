"""A key's cooldown as a fleet member: the in-process cooldown plus the fleet's shared pace.

``FleetCooldown`` is ``Cooldown`` with the same methods: the request path calls
it exactly as in-process. What is added: ``start`` (a 429's wait, a cut or a
bound of the rate) and crowded callers tell the store (``seawall.fleet.parts.Hub``),
which publishes them; the store's background task applies what the fleet
decided (``pace``, ``unpace``, ``hold_level``, ``Cooldown.until``).
"""

from __future__ import annotations

from collections.abc import Callable

from seawall.cooldown import LEVEL, RECHECK, START_WAIT_MAX, Cooldown
from seawall.fleet.parts import Hub
from seawall.learnt_pace import CROWDED, EARLY_CAP, MIN_SUCCESSES, SAMPLE

__all__ = ["CUT_SPACING", "FLEET_CUT", "FLEET_SPACING", "PROBE_CUT", "FleetCooldown"]

#: A 429 under the fleet's pace cuts the fleet's rate by this factor.
FLEET_CUT = 0.9

#: A 429 met by the fleet's early probe cuts the fleet's rate to this share of the rate that
#: was being sent (never under the level the probe started from; ``docs/fleet.md``).
PROBE_CUT = 0.75

#: Seconds after asking for a cut during which this process's 429s ask for none (the
#: answers of requests sent at the old pace are old news; Redis also spaces the fleet's cuts).
CUT_SPACING = 0.5

#: A fleet share this many times the pace turns were booked at (or this many times less)
#: voids those turns.
REBOOK_RISE = 1.25

#: Turns of the fleet's share between two sends of this process at least (``spaced``).
FLEET_SPACING = 1.0


class FleetCooldown(Cooldown):
    """A cooldown whose 429 waits and learnt rate the fleet shares.

    While the fleet paces the key (``pace``: its rate and how many processes
    pace it), each process paces its share, ``rate / members``, with the
    in-process turns (its own GCRA schedule); a 429 here asks the fleet to
    cut its rate by ``FLEET_CUT`` (``Hub.rated``; once per ``CUT_SPACING``
    here, and at most one cut per spacing for the whole fleet), and the
    fleet's rate grows back slowly in Redis. No round trip per request.
    Otherwise it is the in-process cooldown, which learns a pace alone; a
    level it measures is published as the fleet's rate.
    """

    __slots__ = (
        "_asked",
        "_asked_at",
        "_asked_prev",
        "_hub",
        "_spaced",
        "booked",
        "bounded",
        "cut_at",
        "demand_at",
        "key",
        "members",
        "probe",
        "shared",
    )

    def __init__(self, key: str, clock: Callable[[], float], max_wait: float, hub: Hub) -> None:
        super().__init__(clock, max_wait)
        self.key = key
        self._hub = hub
        #: ``(fleet rate, members)`` while the fleet paces the key, else ``None``.
        self.shared: tuple[float, int] | None = None
        #: When this process last asked for a turn (local clock): it paces the key.
        self.demand_at = float("-inf")
        #: When this process last asked the fleet to cut its rate (local clock).
        self.cut_at = float("-inf")
        #: The lowest rate a refill interval bounded the fleet's by, as reported from here
        #: (reset by each read of the fleet's rate: a rate grown past it is told again).
        self.bounded = float("inf")
        #: No send paced by the fleet before this (late wake-ups go spaced, not at once).
        self._spaced = 0.0
        #: Processes pacing the key, this one included, as last read (1 when unknown).
        self.members = 1
        #: The level the fleet's early probe started from, as last read (0: no probe).
        self.probe = 0.0
        #: While the fleet probes: this process's share when its turns were last voided.
        self.booked = 0.0
        # Turns asked for (first bookings, not during a pause): in the sample since
        # ``_asked_at`` and in the one before (``SAMPLE`` s each): the local demand.
        self._asked = 0
        self._asked_prev = 0
        self._asked_at = float("-inf")

    def start(self, seconds: float | None, sent_at: float | None = None) -> None:
        before = self.until
        now = self._clock()
        shared = self.shared
        # A precise wait is a token bucket's refill interval: a fact about the upstream's
        # rate, not a guess, so every 429 that states one may lower the fleet's rate (a
        # cut is spaced; a bound is not: a first level from a 1 ms wait, 970/s for an
        # upstream of 100/s, would otherwise come down 10 % per spacing, for seconds).
        bound = LEVEL / seconds if seconds is not None and 0 < seconds <= START_WAIT_MAX else None
        if shared is None or self._hinted_at is not None:
            super().start(seconds, sent_at)
            level = self.level
            if level is not None and self._hinted_at is None:  # a level measured here
                if bound is not None and bound <= level:  # (the level is the wait's bound)
                    self._hub.rated(self.key, bound, bound=True)
                else:
                    # What this process was admitted while the others took their part: the
                    # fleet's rate is about that many times it (a rate too low would take
                    # the fleet a minute to grow out of; one too high is cut at its 429s).
                    self._hub.rated(self.key, level * self.members, costly=bound is None)
        else:
            if seconds is not None and seconds >= 0:  # (NaN and negative waits are nonsense)
                self.until = max(self.until, now + min(seconds, self.max_wait))
            rate, members = shared
            if now - self.cut_at >= CUT_SPACING:  # the 429s of one overshoot cut once
                self.cut_at = now
                probe = self.probe
                if probe and self.rate is not None:
                    # The fleet's early probe met the limit: 0.75 of what the fleet sent (this
                    # share, capped by the demand, per member), never under the probe's level.
                    # Taken here at once; Redis ends the probe and backs the next one off.
                    sent = min(rate, self.rate * members)
                    cut = max(PROBE_CUT * sent, probe)
                    self.probe = 0.0
                    self.shared = (cut, members)
                    self._refresh(now)
                    self._hub.rated(self.key, cut, costly=bound is None)
                else:
                    # Costly: no refill interval stated, so the 429 paused the fleet for
                    # whole seconds (or a guess): the rate holds after it (``scripts``).
                    self._hub.rated(self.key, rate * FLEET_CUT, costly=bound is None)
                self._rebook(now)
            if bound is not None and bound < rate and bound < self.bounded:
                self.bounded = bound  # a refill interval bounds the rate
                self._hub.rated(self.key, bound, bound=True)
        if self.until > before:
            self._hub.cooled(self.key, self.until - now)

    def _rebook(self, now: float) -> None:
        """Void the turns booked so far (their callers book again at the pace now in force)."""
        self.cuts += 1
        self._tat = max(now, self.until)
        learning = self._learning
        if learning is not None and learning.spaced > now:
            learning.spaced = now  # so is the spacing of late wake-ups at the old pace
        if self._spaced > now:
            self._spaced = now

    def spaced(self) -> float:
        # Capped: the caller sleeps this gap without looking again, and a pace learnt near
        # the floor (one request per ``max_wait``) would chain gaps of minutes; the turns
        # themselves stay paced.
        rate = self.rate
        if self.shared is None or self._hinted_at is not None or rate is None:
            gap = super().spaced()
        else:
            # The fleet's share: sends stay a whole turn apart, so a process whose event loop
            # stalled does not spend the turns it missed (the others used the upstream's
            # capacity meanwhile; its burst allows only a few).
            now = self._clock()
            gap = self._spaced - now if self._spaced > now else 0.0
            self._spaced = now + gap + FLEET_SPACING / rate
        return gap if gap < RECHECK else RECHECK

    def _refresh(self, now: float) -> float | None:
        shared = self.shared
        if shared is None or self._hinted_at is not None:  # headers say more than the fleet
            return super()._refresh(now)
        rate, members = shared
        share = rate / members
        probe = self.probe
        if probe:  # the fleet probes early: serve this process's demand, never a herd
            base = probe / members
            demand = self.demand(now)
            if demand is None:
                share = base  # too few turns asked for to measure: nothing to probe for
            elif share > EARLY_CAP * demand:
                share = max(EARLY_CAP * demand, base)
        self.rate = max(share, self.floor)
        return self.rate

    def _learns(self) -> bool:
        return self.shared is None and super()._learns()

    def _step(self, at: float) -> float:
        if self.shared is None or self._hinted_at is not None:
            return super()._step(at)
        rate = self.rate
        assert rate is not None
        return 1.0 / rate

    def pace(self, shared: tuple[float, int] | None, probe: float = 0.0) -> None:
        """The fleet's pace for this key (from the store's last read), or ``None``;
        ``probe``: the level the fleet's early probe started from (0: none).

        When the share rises well above the pace turns were booked at (the
        fleet's first pace, after a local one learnt low, or a member gone),
        those turns are void: callers asleep on them would idle the process;
        so are they when it falls well below (another process's bound or cut):
        they would go at the old pace. While the fleet probes early, they are
        void when the probe starts and each time the share grows by
        ``REBOOK_RISE`` since they were last voided.
        """
        self.bounded = float("inf")  # a bound below the rate read now is news again
        if shared is None:
            self.unpace()
            return
        before = None if self.shared is None else self.rate
        started = probe > 0 and not self.probe
        self.shared = shared
        self.probe = probe
        now = self._clock()
        share = self._refresh(now)
        if share is None or self._hinted_at is not None:
            return  # headers pace the key
        if probe:
            booked = self.booked
            if started or share > REBOOK_RISE * booked:
                self.booked = share
                self._rebook(now)
            return
        self.booked = 0.0
        changed = before is None or share > REBOOK_RISE * before or share * REBOOK_RISE < before
        if changed and self._tat > now + 1.0 / share:
            self._rebook(now)

    def demand(self, now: float) -> float | None:
        """Turns asked for here per second over the last one or two samples (``None``: too
        few asked, or over too short a time, to tell a burst from a rate)."""
        count = self._asked + self._asked_prev
        total = now - self._asked_at + (SAMPLE if self._asked_prev else 0.0)
        if count < MIN_SUCCESSES or total < SAMPLE / 2:
            return None
        return count / total

    def _ask(self, now: float) -> None:
        """A first turn asked for (outside a pause): counted in the demand."""
        span = now - self._asked_at
        if span >= SAMPLE:
            if span < 2 * SAMPLE:  # the next sample, back to back: the last one is kept
                self._asked_prev, self._asked_at = self._asked, self._asked_at + SAMPLE
            else:
                self._asked_prev, self._asked_at = 0, now
            self._asked = 0
        self._asked += 1

    def unpace(self) -> None:
        """No fleet pace (Redis out of reach, or forgotten): the in-process pace again."""
        self.probe = 0.0
        if self.shared is not None:
            self.shared = None
            self.rate = None  # learnt again here, from the next 429

    def hold_level(self) -> None:
        """Redis is out of reach: an early probe of the fleet's ends here, at its level (what
        surely fitted; the others cannot see what this process would send)."""
        probe, shared = self.probe, self.shared
        if probe and shared is not None:
            self.probe = 0.0
            self.shared = (probe, shared[1])
            now = self._clock()
            self._refresh(now)
            self._rebook(now)

    def booked_ahead(self, now: float) -> bool:
        """Callers wait for turns booked ahead (paced, not in the shared pause)."""
        return self.rate is not None and self._tat > max(now, self.until)

    def reserve(self, max_wait: float | None = None, *, again: bool = False) -> float:
        now = self._clock()
        if self.demand_at < now - 1.0:
            self._hub.demanded(self.key)
        self.demand_at = now
        paced = self.shared is not None and self._hinted_at is None
        if paced and not again and now >= self.until:
            self._ask(now)
        wait = super().reserve(max_wait, again=again)
        if (
            paced
            and not self.probe
            and max_wait is not None
            and max_wait > 0  # (no time left: refused, but no measure of the queue)
            and wait - (self.until - now if self.until > now else 0.0) >= CROWDED * max_wait
        ):
            self._crowded(now)
        return wait

    def _crowded(self, now: float) -> None:
        """A caller would wait ``CROWDED`` of its time left for a turn (not for a pause): if
        turns are asked for faster than the share too, demand outgrew the fleet's pace, and
        the limit may have lifted: the fleet is asked for an early probe (Redis decides)."""
        demand = self.demand(now)
        rate = self.rate
        if demand is not None and rate is not None and demand > rate:
            self._hub.crowded(self.key)
