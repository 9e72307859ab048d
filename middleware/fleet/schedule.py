"""Which keys a round of the fleet store reads: bounded, whatever the number of keys.

A round reads the keys that matter now (a breaker not closed, a 429's wait
running, calls since the key's last read) and a slice of the idle ones, so
that each idle key is read about every ``IDLE_EVERY`` rounds. The reads of a
round are at most ``READ_LIMIT``: with more keys due, the rest wait for the
next rounds in turn (a rotating cursor), and an idle key is then read less
often than every ``IDLE_EVERY`` rounds. A round's round trip, and the event
loop's time spent on its replies, stay small: reading every key in one
pipeline every tenth round stalled the loop for over half a second at 25,000
keys, the round overran its time limit, and the store fell back to
in-process state.
"""

from __future__ import annotations

from collections.abc import Mapping

from seawall.breaker import BreakerState
from seawall.state import KeyState

__all__ = ["IDLE_EVERY", "IDLE_SLICE", "READ_LIMIT", "ReadSchedule"]

#: Idle keys (no call since the last read, breaker closed) are read about every this many rounds.
IDLE_EVERY = 10

#: Most keys read in one round (busy and idle ones together): a read's reply costs the
#: event loop about 50 µs to parse, and a round's garbage feeds the collector, whose full
#: passes over a process holding 10,000 keys' states stall the loop too.
READ_LIMIT = 128

#: Most idle keys read in one round (within ``READ_LIMIT``): at 10,000 idle keys, each is
#: read about every 31 rounds (3 s at the default refresh), not every ``IDLE_EVERY``; its
#: first call makes it busy, read at the next round.
IDLE_SLICE = 32

_CLOSED = BreakerState.CLOSED


class ReadSchedule:
    """The books of which key was read when (one per store; see the module)."""

    def __init__(self) -> None:
        self.round = 0
        #: Requests each key had counted at its last read.
        self._seen: dict[str, int] = {}
        #: Idle reads owed: grows by (idle keys / ``IDLE_EVERY``) every round.
        self._credit = 0.0
        #: Where the next round's turn starts among the idle keys and among the busy ones.
        self._idle_at = 0
        self._busy_at = 0
        self._urgent_at = 0

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)

    def due(self, states: Mapping[str, KeyState], now: float, every: int) -> list[str]:
        """The keys to read this round: at most ``READ_LIMIT`` (see the module)."""
        self.round += 1
        urgent: list[str] = []
        busy: list[str] = []
        idle: list[str] = []
        seen = self._seen
        for key, state in list(states.items()):  # (a thread may add a key meanwhile)
            if state.breaker.state is not _CLOSED or state.cooldown.until > now:
                urgent.append(key)
            elif seen.get(key) != state.stats.requests:
                busy.append(key)
            else:
                idle.append(key)
        due, self._urgent_at = _turn(urgent, READ_LIMIT, self._urgent_at)
        due = list(due)
        room = READ_LIMIT - len(due)
        if busy and room > 0:
            taken, self._busy_at = _turn(busy, room, self._busy_at)
            due += taken
            room -= len(taken)
        self._credit = min(self._credit + len(idle) / max(1, every), float(IDLE_SLICE))
        count = min(int(self._credit + 1e-9), room, len(idle), IDLE_SLICE)
        if count > 0:
            taken, self._idle_at = _turn(idle, count, self._idle_at)
            due += taken
            self._credit -= count
        for key in due:
            made = states.get(key)
            if made is not None:
                seen[key] = made.stats.requests
        return due


def _turn(keys: list[str], count: int, start: int) -> tuple[list[str], int]:
    """``count`` of ``keys`` from ``start`` on, wrapping; and where the next turn starts."""
    if count >= len(keys):
        return keys, 0
    start %= len(keys)
    taken = keys[start : start + count]
    if len(taken) < count:
        taken += keys[: count - len(taken)]
    return taken, (start + count) % len(keys)
