"""The breaker's parts: its window of verdicts, the adaptive mode's buckets, held calls
and the ramp after a recovery.

Kept apart from ``seawall.breaker`` (one concern each: the breaker decides,
these count and queue). No awaiting here either.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol, TypeAlias

__all__ = ["BUCKETS", "BreakerState", "Counts", "ThreadWaiter", "Verdict", "Waiter"]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Counts(Protocol):
    """Where the breaker reads how many calls the key has started (``KeyState``).

    Read through the key's state, not its ``KeyStats``: ``reset_metrics``
    replaces those, and a breaker holding the old ones measured a rate of 0.
    """

    @property
    def requests(self) -> int: ...


#: Buckets of the adaptive mode's trailing window.
BUCKETS = 10


class _Window:
    """The last ``maxlen`` verdicts (``True``: a failure), oldest first, in a ring of bytes.

    The subset of ``deque(maxlen=...)`` the breaker uses, in about a third of
    its memory (a deque takes 760 bytes even for a few entries).
    """

    __slots__ = ("_len", "_ring", "_start", "maxlen")

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._ring = bytearray(maxlen)
        self._start = 0
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> bool:
        if not 0 <= index < self._len:
            msg = f"window index {index} out of range"
            raise IndexError(msg)
        return bool(self._ring[(self._start + index) % self.maxlen])

    def append(self, failure: bool) -> None:
        """Add the newest verdict; when full, the oldest drops out."""
        maxlen = self.maxlen
        if self._len < maxlen:
            self._ring[(self._start + self._len) % maxlen] = failure
            self._len += 1
        else:
            self._ring[self._start] = failure
            self._start = (self._start + 1) % maxlen

    def clear(self) -> None:
        self._start = self._len = 0


class _Throttle:
    """The adaptive mode's trailing window: requests and accepts in ``BUCKETS`` time buckets."""

    __slots__ = ("accepts", "last", "requests", "width")

    def __init__(self, window: float) -> None:
        self.width = window / BUCKETS
        self.requests = [0] * BUCKETS
        self.accepts = [0] * BUCKETS
        self.last = 0  # the absolute index of the newest bucket

    def _roll(self, now: float) -> int:
        index = int(now // self.width)
        gap = index - self.last
        if gap:
            for step in range(1, min(gap, BUCKETS) + 1):  # bounded: at most BUCKETS
                slot = (self.last + step) % BUCKETS
                self.requests[slot] = self.accepts[slot] = 0
            self.last = index
        return index % BUCKETS

    def add(self, now: float, accepted: bool) -> None:
        slot = self._roll(now)
        self.requests[slot] += 1
        if accepted:
            self.accepts[slot] += 1

    def refusal(self, now: float, k: float) -> float:
        """SRE's local rejection probability: max(0, (requests - k*accepts) / (requests + 1))."""
        self._roll(now)
        requests = sum(self.requests)
        return max(0.0, (requests - k * sum(self.accepts)) / (requests + 1))


#: What a held call's future gives: the time (breaker clock) at which to ask
#: again, or ``None``: fail, the probe failed or the hold ran out.
Verdict = float | None


class ThreadWaiter:
    """A held thread's answer (a sync form's call, ``seawall._path.hold.held_thread``): the
    future of an async held call, for a thread. Answered by whoever records the verdict
    (under the key's lock, from any thread); the thread blocks on it (``wait``)."""

    __slots__ = ("_answer", "_event", "_verdict")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._verdict: Verdict = None
        self._answer = 0  # 0: waiting, 1: answered, 2: cancelled (it stopped waiting)

    def done(self) -> bool:
        return self._answer != 0

    def cancelled(self) -> bool:
        return self._answer == 2

    def cancel(self) -> bool:
        if self._answer:
            return False
        self._answer = 2
        self._event.set()
        return True

    def set_result(self, verdict: Verdict) -> None:
        if not self._answer:
            self._verdict, self._answer = verdict, 1
            self._event.set()

    def result(self) -> Verdict:
        return self._verdict if self._answer == 1 else None

    def wait(self, timeout: float) -> bool:
        """Block until answered or ``timeout`` seconds passed; whether it was answered."""
        return self._event.wait(timeout) and self._answer == 1


#: What a held call waits on: a future on its event loop, or a thread's waiter.
Waiter: TypeAlias = "asyncio.Future[Verdict] | ThreadWaiter"


class _Held:
    """The calls waiting for a probe's verdict, first come first served.

    A call that stops waiting cancels its future; answered and cancelled
    futures are passed over (and pruned when the queue is full).
    """

    __slots__ = ("queue",)

    def __init__(self) -> None:
        self.queue: deque[tuple[float, Waiter]] = deque()  # (hold ends, future)

    def live(self) -> int:
        """How many still wait; prunes those that left."""
        queue = self.queue
        self.queue = queue = deque(entry for entry in queue if not entry[1].done())
        return len(queue)

    def answer(self, limit: int, verdict: Callable[[int], Verdict]) -> None:
        """Answer up to ``limit`` waiters in order, the i-th with ``verdict(i)``."""
        queue = self.queue
        answered = 0
        while queue and answered < limit:  # bounded by the queue
            future = queue.popleft()[1]
            if not future.done():
                _give(future, verdict(answered))
                answered += 1

    def expire(self, now: float) -> None:
        """Fail the waiters at the front whose hold has run out."""
        queue = self.queue
        while queue and (queue[0][0] <= now or queue[0][1].done()):  # bounded by the queue
            future = queue.popleft()[1]
            if not future.done():
                _give(future, None)


def _give(future: Waiter, verdict: Verdict) -> None:
    """Answer a held call's ``future``, from whichever thread recorded the verdict.

    A held thread's waiter is answered here and then (``ThreadWaiter``).
    A sync call's probe (``call_sync`` in a thread) can settle while async
    calls are held on the event loop: a future is only set on its own loop's
    thread, so another thread hands the answer to that loop. A loop already
    closed has no one left waiting.
    """
    if type(future) is ThreadWaiter:
        future.set_result(verdict)
        return
    assert isinstance(future, asyncio.Future)
    loop = future.get_loop()
    if asyncio._get_running_loop() is loop:
        future.set_result(verdict)
        return
    with contextlib.suppress(RuntimeError):  # the loop closed: nothing waits any more
        loop.call_soon_threadsafe(_give_if_waiting, future, verdict)


def _give_if_waiting(future: asyncio.Future[Verdict], verdict: Verdict) -> None:
    if not future.done():  # it may have stopped waiting (cancelled) meanwhile
        future.set_result(verdict)


#: A ramp's last departure before any: one float shared by every ramp (a key's
#: state is counted in bytes, see docs/architecture.md "State size").
_NEVER = -math.inf

#: A call that comes to the ramp's line this much of a gap early still goes:
#: timer jitter below it neither delays the call nor slows the ramp.
TOLERANCE = 0.5


class _Ramp:
    """The queue after a recovery: turns one ``gap`` apart, first come first served.

    A call books a turn (``book``: its ticket, when its turn is due), sleeps
    until then and leaves through ``depart``, which spaces departures a gap
    apart on the line of the departures actually made. A loop that stalled
    wakes many sleepers at once, past their tickets: they leave a gap apart
    from the first of them, not as a bunch (the "peak after recovery").
    """

    __slots__ = ("gap", "last", "line", "pending")

    def __init__(self, start: float, gap: float) -> None:
        self.gap = gap
        self.line = start  # the next free ticket
        self.last = _NEVER  # the last departure (made or booked)
        self.pending = 0  # tickets booked and not yet departed nor given back

    def book(self, now: float) -> float:
        """A ticket: the time the call's turn is due (after a stall, now)."""
        slot = max(self.line, now)
        self.line = slot + self.gap
        self.pending += 1
        return slot

    def depart(self, now: float) -> float:
        """A ticket holder leaves: seconds to wait first (0: now), a gap after the last."""
        self.pending = max(0, self.pending - 1)
        at = self.last + self.gap
        if now >= at - TOLERANCE * self.gap:
            self.last = now
            return 0.0
        self.last = at
        return at - now

    def leave(self) -> None:
        """A ticket holder gave up its turn (cancelled, or out of time)."""
        self.pending = max(0, self.pending - 1)

    def drained(self, now: float) -> bool:
        """Nobody waits for a turn and none is due later."""
        return not self.pending and self.line <= now and self.last <= now
