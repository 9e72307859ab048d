"""What a learnt pace measures: successes, demand and the last answer, per key.

``seawall.learnt_pace`` decides the pace from these measures; this module only
counts, on times passed in (no clock of its own). Two samples of at least
``SAMPLE`` seconds each make the admitted rate and the demand; the last answer
(and when its request was sent) tells a 429 that a host's stall bunched with
it from one the pace itself met.
"""

from __future__ import annotations

import math

__all__ = ["BUNCH", "CALM", "MIN_SUCCESSES", "NEVER", "SAMPLE", "PaceSamples"]

#: Seconds of one admitted-rate sample (two are kept), and the successes it needs.
SAMPLE = 0.5
MIN_SUCCESSES = 5

#: An answer that comes within this share of a turn's length after the one before it,
#: though its request was sent at least the rest of a turn later, was bunched with it:
#: held and answered together.
BUNCH = 0.25

#: Seconds without a bunch before one for its 429 to be a stall of a host (it does not lower
#: the level nor restart the hold; the pause is honoured). An upstream that answers in
#: batches bunches every few milliseconds: its 429s are the pace's, as without bunches.
CALM = 2.0

#: "Never": one shared float, so a fresh key's state stays small.
NEVER = -math.inf


class PaceSamples:
    """The measures of one key's learnt pace (its part of ``LearntPace``)."""

    __slots__ = (
        "answered_at",
        "answered_sent",
        "asked",
        "asked_prev",
        "bunch_at",
        "calm",
        "ok",
        "ok_prev",
        "ok_prev_since",
        "ok_since",
    )

    def __init__(self) -> None:
        self.answered_at = NEVER  # the last answer (success or 429) while paced
        self.answered_sent = NEVER  # ... and when its request was sent (when known)
        self.bunch_at = NEVER  # the last answer bunched with the one before it
        self.calm = False  # the latest bunch came after ``CALM`` seconds without one
        self.ok = 0  # successes in the current sample (since ``ok_since``)
        self.ok_since = NEVER
        # ... and in the one before, since ``ok_prev_since`` (the sample's old ``ok_since``:
        # a float object shared, not a span made anew; 24 B per key).
        self.ok_prev = 0
        self.ok_prev_since = NEVER
        # Turns asked for (first bookings: the demand) in the same two samples.
        self.asked = 0
        self.asked_prev = 0

    def admitted(self, now: float) -> float | None:
        """Successes per second since the last pause, over about the last second or more.

        ``None`` while fewer than ``MIN_SUCCESSES`` were seen, or over less than
        ``SAMPLE / 2`` seconds (too short to tell a burst from a rate).
        """
        return self._per_second(self.ok + self.ok_prev, now)

    def demand(self, now: float) -> float | None:
        """Turns asked for per second (first bookings, refused ones too), over the samples
        of ``admitted``; ``None`` while too few were asked over too short a time."""
        return self._per_second(self.asked + self.asked_prev, now)

    def _per_second(self, count: int, now: float) -> float | None:
        """``count`` over the two samples (since ``ok_prev_since``), once it is a measure."""
        total = now - self.ok_prev_since
        if count < MIN_SUCCESSES or total < SAMPLE / 2:
            return None
        return count / total

    def asking(self, now: float) -> None:
        """A caller asks for its first turn (not a booking again after a cut); asked during
        the pause, it waits in the queue the pace drains, not in the rate measured."""
        if now >= self.ok_since:
            self.asked += 1

    def succeeded(self, now: float, sent_at: float | None = None, rate: float = 0.0) -> None:
        """A success came back while paced (``sent_at``: when it was sent, when known;
        ``rate``: the pace in force): it counts towards the admitted rate."""
        self.answered(now, rate, sent_at)
        span = now - self.ok_since
        if span >= 0:  # (answered during the pause: sent before the cut)
            if span >= SAMPLE and self.ok >= MIN_SUCCESSES:
                self.ok_prev, self.ok_prev_since = self.ok, self.ok_since
                self.ok, self.ok_since = 0, now
                self.asked_prev, self.asked = self.asked, 0
            self.ok += 1

    def answered(self, now: float, rate: float | None, sent_at: float | None) -> bool:
        """An answer came now (its request sent at ``sent_at``; ``rate``: the pace in force):
        whether it came within ``BUNCH`` of a turn after the answer before it, though sent the
        rest of a turn or more later (held and answered together), after ``CALM`` seconds
        without such a bunch: a stall of a host. It is now the last answer."""
        if not rate:
            return False  # unpaced: no turn to measure by
        bunched = (
            sent_at is not None
            and self.answered_sent != NEVER  # (both sends known)
            and now - self.answered_at < BUNCH / rate
            and sent_at - self.answered_sent >= (1.0 - BUNCH) / rate
        )
        self.answered_at = now
        self.answered_sent = NEVER if sent_at is None else sent_at
        if not bunched:
            return False
        if now - self.bunch_at > 1.0 / rate:  # a bunch starts
            self.calm = now - self.bunch_at >= CALM
        self.bunch_at = now
        return self.calm

    def measure_from(self, start: float) -> None:
        """Measure the admitted rate and the demand afresh from ``start`` (a pause's end):
        what came before was another pace, or the pause itself."""
        self.ok, self.ok_prev = 0, 0
        self.asked, self.asked_prev = 0, 0
        self.ok_since = self.ok_prev_since = start
