"""Counters of one key, with no dependency: cheap to update, bounded in memory.

Each key has a ``KeyStats``: plain integer counters and a latency histogram
with fixed buckets (``LATENCY_BUCKETS``), so memory per key is bounded and an
update is a ``bisect`` and an increment. ``seawall.metrics`` turns them into
the report behind ``sw.health()``; exporters (``seawall.plugins.prometheus``,
``seawall.plugins.otel``) read the same objects at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from typing import Any, overload

__all__ = ["LATENCY_BUCKETS", "KeyStats", "LatencyHistogram", "totals"]

#: Upper bounds (seconds, inclusive) of the latency buckets; one more bucket
#: (``+Inf``) holds everything slower. Roughly 1-2.5-5 steps from 1 ms to 60 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.35,
    0.5,
    0.75,
    1.0,
    1.5,
    2.5,
    5.0,
    7.5,
    10.0,
    15.0,
    30.0,
    60.0,
)

#: Rejection reasons that end a call before it finishes (a budget rejection
#: still finishes the call: the last failure is returned or raised).
_ENDING_REJECTIONS = ("breaker", "deadline", "cooldown", "load_shedding")


#: Each bucket's bounds: bucket ``i`` holds durations ``d`` with ``_LOWS[i] < d <= _HIGHS[i]``,
#: exactly where ``bisect_left(LATENCY_BUCKETS, d)`` puts them.
_LOWS: tuple[float, ...] = (float("-inf"), *LATENCY_BUCKETS)
_HIGHS: tuple[float, ...] = (*LATENCY_BUCKETS, float("inf"))


class LatencyHistogram:
    """Counts of durations per fixed bucket, with their sum and the largest seen.

    The bucket of the last duration is remembered (``low < d <= high``,
    ``bucket``): one key's durations mostly repeat their bucket, and two float
    comparisons cost a tenth of ``bisect_left`` over the 22 bounds. A duration
    outside it is placed by ``place``, which moves the remembered bucket there.
    """

    __slots__ = ("bucket", "counts", "high", "low", "max", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.max = 0.0
        self.bucket = 0  # the last duration's bucket, and its bounds
        self.low = _LOWS[0]
        self.high = _HIGHS[0]

    def place(self, seconds: float) -> int:
        """The bucket of ``seconds`` (``bisect_left``), remembered as the last one."""
        bucket = bisect_left(LATENCY_BUCKETS, seconds)
        self.bucket = bucket
        self.low = _LOWS[bucket]
        self.high = _HIGHS[bucket]
        return bucket

    def observe(self, seconds: float) -> None:
        # KeyStats.first_try writes this out: keep the two in step.
        if self.low < seconds <= self.high:
            self.counts[self.bucket] += 1
        else:
            self.counts[self.place(seconds)] += 1
        self.sum += seconds
        if seconds > self.max:
            self.max = seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s observations to this one (for totals across keys)."""
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.sum += other.sum
        self.max = max(self.max, other.max)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= bound)`` pairs, ending with ``(inf, count)``."""
        pairs, running = [], 0
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), self.counts, strict=True):
            running += n
            pairs.append((bound, running))
        return pairs

    def quantile(self, q: float) -> float | None:
        """An estimate of the ``q`` quantile (0..1): linear within its bucket.

        Exact to within the width of one bucket; never above the largest
        duration seen. ``None`` when nothing was observed.
        """
        total = self.count
        if not total:
            return None
        rank = q * total
        lower, running = 0.0, 0
        for bound, n in zip(LATENCY_BUCKETS, self.counts, strict=False):
            if n and running + n >= rank:
                upper = min(bound, self.max)
                return lower + (upper - lower) * max(0.0, rank - running) / n
            running += n
            lower = bound
        return self.max  # the +Inf bucket: the largest seen is the best estimate

    def summary(self) -> dict[str, float | None]:
        count = self.count
        return {
            "average_latency": self.sum / count if count else None,
            "p50_latency": self.quantile(0.50),
            "p95_latency": self.quantile(0.95),
            "p99_latency": self.quantile(0.99),
            "max_latency": self.max if count else None,
        }


class _WithFirstTries:
    """A counter of ``KeyStats`` that includes ``first_tries``: read, it adds them to its
    slot; written (``stats.attempts += 1``), it keeps them out of the slot."""

    __slots__ = ("slot",)

    def __init__(self, slot: str) -> None:
        self.slot = slot

    @overload
    def __get__(self, stats: None, owner: type[KeyStats]) -> _WithFirstTries: ...

    @overload
    def __get__(self, stats: KeyStats, owner: type[KeyStats]) -> int: ...

    def __get__(self, stats: KeyStats | None, owner: type[KeyStats]) -> int | _WithFirstTries:
        if stats is None:
            return self
        count: int = getattr(stats, self.slot)
        return count + stats.first_tries

    def __set__(self, stats: KeyStats, value: int) -> None:
        setattr(stats, self.slot, value - stats.first_tries)


#: The empty counter every key starts with (shared, never written: see ``KeyStats.count``).
_NO_COUNTS: Counter[str] = Counter()


class KeyStats:
    """What happened to one key since the last reset.

    ``requests`` counts calls started, ``attempts`` upstream attempts,
    ``retries`` retries scheduled; ``successes`` and ``failures`` (by
    category) count calls that finished; ``rejections`` (by reason) calls or
    retries refused without an upstream call; ``transitions`` breaker moves
    (``"closed->open"``); ``latency`` the duration of finished calls,
    retries and waits included. ``cut_by_deadline`` counts calls whose last
    attempt the caller's own deadline cut short (``seawall.deadline()``, an
    inbound timeout header, a policy deadline shorter than the attempt
    limit): they finished, unsuccessfully, but are not the upstream's
    failures, so they are not in ``failures`` and the breaker never saw them.
    ``last_failure`` is when (the ``Seawall``'s clock) an attempt last failed in
    a way the breaker counts against the upstream; ``None`` before that.
    ``held`` counts calls the breaker held for a probe's verdict (each once,
    however it ended: released, failed, cancelled). ``first_tries`` counts the
    calls a lean path made and that succeeded at their first attempt
    (``lean_success``).

    ``requests``, ``attempts`` and ``successes`` read and write as plain
    counters; a lean path's first-try success is in each of them through
    ``first_tries`` alone: one count where three were made (each ``+=`` on a
    slot costs about 0.3k instructions of a lean call). No step of any count
    makes one of them read lower than before (exporters read without the lock).
    """

    __slots__ = (
        "_attempts",
        "_requests",
        "_successes",
        "cut_by_deadline",
        "failures",
        "first_tries",
        "held",
        "last_failure",
        "latency",
        "rejections",
        "retries",
        "transitions",
        "waited",
    )

    def __init__(self) -> None:
        # Each call counted in ``first_tries`` is also a request, an attempt and a success:
        # these three hold the rest (see the properties below).
        self._requests = 0
        self._attempts = 0
        self._successes = 0
        self.first_tries = 0
        self.retries = 0
        # The counters by name start as one shared empty Counter, never written: most keys
        # never fail, and three Counters of their own would cost ~290 B of a key's 2 KiB.
        # Count through ``count`` (it gives the key a Counter of its own on first use).
        self.failures: Counter[str] = _NO_COUNTS  # by category
        self.cut_by_deadline = 0  # calls the caller's deadline ended, not the upstream
        self.rejections: Counter[str] = _NO_COUNTS  # by reason
        self.transitions: Counter[str] = _NO_COUNTS  # "closed->open"
        self.latency = LatencyHistogram()
        self.waited = 0.0  # seconds spent in backoff and cooldown waits
        self.held = 0  # calls held for a probe's verdict
        self.last_failure: float | None = None  # clock time of the last counted failure

    def count(self, counter: str, name: str) -> None:
        """One more ``name`` in ``counter``: ``failures``, ``rejections`` or ``transitions``."""
        counts: Counter[str] = getattr(self, counter)
        if counts is _NO_COUNTS:
            counts = Counter()
            setattr(self, counter, counts)
        counts[name] += 1

    def observe_call(self, elapsed: float, success: bool) -> None:
        """A call finished after ``elapsed`` seconds (failures are counted by the engine)."""
        if success:
            self._successes += 1
        self.latency.observe(elapsed)

    #: Calls started.
    requests = _WithFirstTries("_requests")
    #: Upstream attempts made (a cancelled one is not counted).
    attempts = _WithFirstTries("_attempts")
    #: Calls that finished with a success.
    successes = _WithFirstTries("_successes")

    def began(self) -> None:
        """One more call started (``requests += 1``, without the descriptor's two calls)."""
        self._requests += 1

    def fresh(self) -> KeyStats:
        """Zeroed counters of the same kind, for ``reset_metrics`` (a fleet's note calls)."""
        return KeyStats()

    def attempted(self) -> None:
        """One more attempt ended (``attempts += 1``, without the descriptor's two calls)."""
        self._attempts += 1

    def first_try(self, elapsed: float) -> None:
        """A call counted in ``requests`` when it began succeeded at its first attempt.

        Its attempt and ``observe_call`` in one call. Not moved into
        ``first_tries``: taking it out of ``_requests`` first would let a reader
        (an exporter reads without the key's lock) see ``requests`` one lower
        than before, which Prometheus takes for a counter reset.
        """
        self._attempts += 1
        self._successes += 1
        self.latency.observe(elapsed)

    def lean_success(self, elapsed: float) -> None:
        """A call not counted yet began and succeeded at its first attempt: a lean path's.

        One request, one attempt and one success in ``first_tries``, and its
        latency. The lean paths' only record of a call that succeeded:
        ``LatencyHistogram.observe`` is written out here (a call less, about 1k
        instructions); keep the two in step, and ``seawall.fleet.schedule.FleetStats``'s
        copy of this method.
        """
        self.first_tries += 1
        latency = self.latency
        if latency.low < elapsed <= latency.high:  # the last call's bucket
            latency.counts[latency.bucket] += 1
        else:
            latency.counts[latency.place(elapsed)] += 1
        latency.sum += elapsed
        if elapsed > latency.max:
            latency.max = elapsed

    @property
    def finished(self) -> int:
        """Calls that ended: successes, failures, and calls refused outright."""
        ended_early = sum(self.rejections[r] for r in _ENDING_REJECTIONS if r in self.rejections)
        failed = sum(self.failures.values()) + self.cut_by_deadline
        return self.successes + failed + ended_early

    def snapshot(self) -> dict[str, Any]:
        finished = self.finished
        return {
            "requests": self.requests,
            "attempts": self.attempts,
            "retries": self.retries,
            "successes": self.successes,
            "failures": dict(self.failures),
            "cut_by_deadline": self.cut_by_deadline,
            "rejections": dict(self.rejections),
            "transitions": dict(self.transitions),
            "waited": self.waited,
            "held_total": self.held,
            "success_rate": (self.successes / finished) if finished else None,
            **self.latency.summary(),
        }


def totals(all_stats: Iterable[KeyStats]) -> dict[str, Any]:
    """Every key's counters added up: numbers, counters by name, and latency histograms.

    Generic over ``KeyStats.__slots__``, so a counter added there is summed
    here without a second edit (``waited`` was once forgotten).
    """
    total = KeyStats()
    for stats in all_stats:
        for name in KeyStats.__slots__:
            mine, theirs = getattr(total, name), getattr(stats, name)
            if name == "last_failure":
                continue  # a time, not a count: reported per key
            if isinstance(mine, LatencyHistogram):
                mine.merge(theirs)
            elif isinstance(mine, Counter):
                if mine is _NO_COUNTS:  # the shared empty one: never written
                    mine = Counter()
                    setattr(total, name, mine)
                mine.update(theirs)
            else:
                setattr(total, name, mine + theirs)
    return total.snapshot()
