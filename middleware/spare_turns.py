"""Turns given back: paced turns whose callers left before them.

A caller waiting for its paced turn (``Cooldown.reserve``) may leave first:
cancelled by its own caller, an outer timeout, a client that hung up. Its turn
stays booked on the key's schedule, and lost, every caller after it waits one
turn longer while the upstream idles: 60 callers giving up after 1 s on a
pace of 2 per second left the next caller waiting 6 s, for nothing.

So the turn is given back. The last turn booked shortens the schedule
(``Cooldown.give_back``); one in the middle is kept here, and the next caller
to book takes the earliest such turn that has not passed, before a new one at
the end of the schedule. Turns given back belong to the schedule they were
booked on: a cut (``Cooldown.cuts``) voids them with every other turn booked
before it.
"""

from __future__ import annotations

from bisect import bisect_left, insort

#: Most turns kept given back per key; beyond it a turn is lost to the schedule.
MAX_SPARE = 64


class SpareTurns:
    """Turns given back on one schedule (the cooldown's ``cuts`` when they were booked)."""

    __slots__ = ("cuts", "turns")

    def __init__(self, cuts: int) -> None:
        self.cuts = cuts
        self.turns: list[float] = []  # sorted: the earliest first

    @staticmethod
    def give(spare: SpareTurns | None, cuts: int, slot: float) -> SpareTurns:
        """The turn at ``slot``, booked when ``cuts`` was the count of cuts, is free: kept
        in ``spare``, or in a new one when ``spare`` holds turns of an older schedule."""
        if spare is None or spare.cuts != cuts:
            spare = SpareTurns(cuts)
        if len(spare.turns) < MAX_SPARE:
            insort(spare.turns, slot)
        return spare

    def take(self, cuts: int, earliest: float, before: float) -> float | None:
        """The earliest free turn at ``earliest`` or later, if it comes before ``before``
        (taken: no longer free); ``None`` when there is none, or when a cut since (``cuts``
        is the count now) voided them all. Passed turns are dropped."""
        turns = self.turns
        if cuts != self.cuts:
            turns.clear()
            return None
        passed = bisect_left(turns, earliest)
        if passed:
            del turns[:passed]
        if turns and turns[0] < before:
            return turns.pop(0)
        return None

    def end(self, cuts: int, slot: float, step: float) -> float:
        """Where the schedule ends when its last turn, at ``slot``, is free: there, or
        sooner when the free turns just before it (``step`` apart) are the last booked."""
        turns = self.turns
        if cuts == self.cuts:
            while turns and slot - turns[-1] < 1.5 * step:
                slot = turns.pop()
        return slot
