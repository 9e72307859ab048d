"""Which keys a round of the fleet store reads: bounded, whatever the number of keys.

A round reads the keys that matter now (a breaker not closed, a 429's wait
running, calls since the key's last read) and a slice of the idle ones, so
that each idle key is read about every ``IDLE_EVERY`` rounds. The reads of a
round are at most ``READ_LIMIT``: with more keys due, the rest wait for the
next rounds in turn, and an idle key is then read less often than every
``IDLE_EVERY`` rounds. A round's round trip, and the event loop's time spent
on its replies, stay small: reading every key in one pipeline every tenth
round stalled the loop for over half a second at 25,000 keys, the round
overran its time limit, and the store fell back to in-process state.

Choosing them costs a round no walk of the idle keys either (a walk of
10,000 states took ~7 ms of the loop every round): the schedule is told.

- *Urgent*: the store marks a key (``mark_urgent``) on the news of its parts
  (a breaker moved, a 429's wait began) and when a read adopts the fleet's
  open or wait; a round looks at the marked keys only, and unmarks those no
  longer urgent.
- *Busy*: a key's ``FleetStats`` notes its first call since the key's last
  read (one set insertion; later calls test one slot), and a round reads the
  noted keys in the order they were noted, and new keys the same way. (A
  walk of a rotating slice of the keys instead would cost nothing per call,
  but find a key's first call among 10,000 only within 40 rounds at 256
  keys a round; noting costs a fleet's ``sw.call`` ~110 instructions of
  ~17,000 and finds it at the next round.)
- *Idle*: the keys read longest ago (``_seen`` is kept in the order of
  reads), a slice a round; a key met there that turns out urgent or called
  unnoted (a ``KeyStats`` that notes nothing) is read all the same.

Other threads (sync calls) make states, call keys and forget them meanwhile:
they only add to (or remove from) ``_calls``, ``_urgent`` and ``_seen``, one
atomic operation each; the round copies or pops what it walks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from itertools import islice

from seawall.breaker import BreakerState
from seawall.state import KeyState
from seawall.stats import KeyStats

__all__ = ["IDLE_EVERY", "IDLE_SLICE", "READ_LIMIT", "FleetStats", "ReadSchedule"]

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


class FleetStats(KeyStats):
    """A fleet key's counters, which note the key's first call since its last read.

    ``note`` is the schedule's (``ReadSchedule``) while the key has had no call
    since its last read; the first call counted after that (``began``,
    ``lean_success``: every call is counted by one of them) clears it and
    notes the key. The round that picks the key sets it again before the
    read is built, so a call counted later is noted for a later round, and
    one counted earlier is in what the read sends (the budget's counts).
    The request path pays one slot test a call, and one set insertion for
    the first call after a read (``benchmarks/rounds.py --instructions``).
    """

    __slots__ = ("key", "note")

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        #: Called with ``key`` on the first call since the last read; ``None`` until the
        #: next read (the key is noted already).
        self.note: Callable[[str], None] | None = None

    def began(self) -> None:
        self._requests += 1
        note = self.note
        if note is not None:
            self.note = None
            note(self.key)

    def lean_success(self, elapsed: float) -> None:
        # ``KeyStats.lean_success`` written out (calling it costs ~600 instructions a call,
        # ``benchmarks/rounds.py --instructions``); keep the two in step.
        self.first_tries += 1
        latency = self.latency
        if latency.low < elapsed <= latency.high:  # the last call's bucket
            latency.counts[latency.bucket] += 1
        else:
            latency.counts[latency.place(elapsed)] += 1
        latency.sum += elapsed
        if elapsed > latency.max:
            latency.max = elapsed
        note = self.note
        if note is not None:
            self.note = None
            note(self.key)

    def fresh(self) -> FleetStats:
        """Zeroed counters (``reset_metrics``): the key is noted, and read at the next round."""
        note = self.note
        if note is not None:
            self.note = None
            note(self.key)
        return FleetStats(self.key)


def urgent(state: KeyState, now: float) -> bool:
    """Whether ``state`` needs reading every round: a breaker not closed, or a wait running."""
    return state.breaker.state is not _CLOSED or state.cooldown.until > now


class ReadSchedule:
    """The books of which key was read when (one per store; see the module)."""

    def __init__(self) -> None:
        self.round = 0
        #: Every key read, the one read longest ago first (a dict as an ordered set: a read
        #: moves its key to the end; an ``OrderedDict`` costs ~90 B more a key).
        self._seen: dict[str, None] = {}
        #: Keys noted since the last round (by any thread): new keys, first calls.
        self._calls: set[str] = set()
        self._note = self._calls.add
        #: Keys with calls since their last read, in the order noted (the round's thread only).
        self._busy: OrderedDict[str, None] = OrderedDict()
        #: Keys marked urgent (by any thread), in the order marked.
        self._urgent: dict[str, None] = {}
        #: Idle reads owed: grows by (idle keys / ``IDLE_EVERY``) every round.
        self._credit = 0.0
        #: Where the next round's turn starts among the urgent keys.
        self._urgent_at = 0

    def track(self, state: KeyState) -> None:
        """A new key's state: counters that note its calls here; read at the next round."""
        state.stats = FleetStats(state.key)
        self._calls.add(state.key)

    def mark_urgent(self, key: str) -> None:
        """``key`` may need reading every round (news of its breaker or its wait)."""
        self._urgent[key] = None

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)
        self._urgent.pop(key, None)
        self._calls.discard(key)  # (``_busy`` drops it when met: the round's own)

    def due(self, states: Mapping[str, KeyState], now: float, every: int) -> list[str]:
        """The keys to read this round: at most ``READ_LIMIT`` (see the module)."""
        self.round += 1
        busy = self._busy
        calls = self._calls
        # Noted since the last round, in C calls (no thread runs in one): a key noted
        # between the copy and the removal was in the copy already, or stays for the next.
        noted = calls.copy()
        calls.difference_update(noted)
        busy.update(dict.fromkeys(noted))
        hot = self._still_urgent(states, now)
        due, self._urgent_at = _turn(hot, READ_LIMIT, self._urgent_at)
        for key, _ in due:
            busy.pop(key, None)  # read now
        idle = max(0, len(states) - len(hot) - len(busy))
        room = READ_LIMIT - len(due)
        if busy and room > 0:
            due = due + self._busy_turn(states, room, {key for key, _ in hot})
            room = READ_LIMIT - len(due)
        self._read(due)
        self._credit = min(self._credit + idle / max(1, every), float(IDLE_SLICE))
        count = min(int(self._credit + 1e-9), room, idle, IDLE_SLICE)
        if count > 0:
            taken = self._idle_slice(states, count)
            self._read(taken)
            self._credit -= len(taken)
            due = due + taken
        if not busy:
            busy.clear()  # (its table, sized for the most keys it held, goes: ~40 B a key)
        return [key for key, _ in due]

    def _still_urgent(self, states: Mapping[str, KeyState], now: float) -> list[_Pair]:
        """The marked keys still urgent, in the order marked; the others are unmarked."""
        marked = self._urgent
        hot: list[_Pair] = []
        for key in list(marked):  # (a thread may mark one meanwhile)
            state = states.get(key)
            if state is not None and urgent(state, now):
                hot.append((key, state))
                continue
            marked.pop(key, None)
            # Marked again meanwhile: the news came after the look above, and the state's
            # change before its news, so a look now sees it.
            if state is not None and urgent(state, now):
                marked[key] = None
                hot.append((key, state))
        return hot

    def _busy_turn(self, states: Mapping[str, KeyState], room: int, hot: set[str]) -> list[_Pair]:
        """Up to ``room`` busy keys, noted longest ago first (an urgent one waits its turn)."""
        busy = self._busy
        taken: list[_Pair] = []
        for _ in range(len(busy)):
            if len(taken) >= room:
                break
            key, _ = busy.popitem(last=False)
            state = states.get(key)
            if state is None:
                continue  # forgotten
            if key in hot:
                busy[key] = None  # read among the urgent ones, in their turn
                continue
            taken.append((key, state))
        return taken

    def _idle_slice(self, states: Mapping[str, KeyState], count: int) -> list[_Pair]:
        """Up to ``count`` of the keys read longest ago (``_seen``'s head) that no turn holds.

        Looks at no more than twice ``count`` keys: the head holds idle keys, as
        every read moves its key to the end.
        """
        seen = self._seen
        busy = self._busy
        marked = self._urgent
        taken: list[_Pair] = []
        for key in list(islice(seen, 2 * count)):  # (one C call: no thread runs meanwhile)
            if len(taken) >= count:
                break
            state = states.get(key)
            if state is None:
                seen.pop(key, None)  # forgotten (a read raced its forgetting)
            elif key in marked or key in busy:
                if seen.pop(key, False) is None:  # to the end: read in its turn
                    seen[key] = None  # (unless a thread forgot it meanwhile)
            else:
                taken.append((key, state))  # (one urgent unmarked: its read marks it, the store's)
        return taken

    def _read(self, pairs: list[_Pair]) -> None:
        """Book these keys as read now: to the end of ``_seen``, their next call noted."""
        seen = self._seen
        note = self._note
        for key, state in pairs:
            stats = state.stats
            if type(stats) is FleetStats:
                stats.note = note
            seen.pop(key, None)  # to the end (a thread may forget it meanwhile: found later)
            seen[key] = None
            if state.stats is not stats:  # (``reset_metrics`` meanwhile: read it again)
                note(key)


_Pair = tuple[str, KeyState]


def _turn(keys: list[_Pair], count: int, start: int) -> tuple[list[_Pair], int]:
    """``count`` of ``keys`` from ``start`` on, wrapping; and where the next turn starts."""
    if count >= len(keys):
        return keys, 0
    start %= len(keys)
    taken = keys[start : start + count]
    if len(taken) < count:
        taken += keys[: count - len(taken)]
    return taken, (start + count) % len(keys)
