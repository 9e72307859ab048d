"""The retry budget of one key: retries may be at most a share of requests.

Each request deposits ``ratio`` tokens and each retry withdraws one, over a
sliding window of ``window`` seconds kept in ten buckets; a floor of
``min_retries_per_second * window`` tokens lets a quiet key retry at all.
Under sustained total failure, upstream calls per request therefore approach
``1 + ratio`` rather than ``max_attempts``.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable

from seawall.policy import BudgetPolicy

__all__ = ["RetryBudget"]

_BUCKETS = 10

#: Requests per bucket, then retries per bucket: one unboxed array per key ("I": 4 billion
#: calls per bucket at most) is 110 B smaller than two lists (DESIGN: 2 KiB per key).
_EMPTY = array("I", bytes(4 * 2 * _BUCKETS))


class RetryBudget:
    """Token accounting for one key over a sliding window."""

    # No ``__dict__``: one per key, inside DESIGN's 2 KiB per key.
    __slots__ = (
        "_clock",
        "_counts",
        "_epoch",
        "next_at",
        "pending",
        "policy",
    )

    def __init__(self, policy: BudgetPolicy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self._clock = clock
        self._counts = _EMPTY[:]  # requests at [slot], retries at [_BUCKETS + slot]
        self._epoch = 0  # index of the newest bucket
        #: When the next bucket starts; and the requests of the newest bucket not yet in
        #: ``_counts``. Public: the lean paths write ``on_request`` out (a call less).
        self.next_at = 0.0
        self.pending = 0
        self.advance(clock())

    def advance(self, now: float) -> None:
        """Move to ``now``'s bucket: fold the pending requests into the newest one, then
        empty the buckets that left the window. Only writers call it, under the key's lock."""
        width = self.policy.window / _BUCKETS  # (computed: a float per key costs 24 B)
        now_epoch = int(now / width)
        gap = now_epoch - self._epoch
        if gap > 0:
            counts = self._counts
            counts[self._epoch % _BUCKETS] += self.pending
            self.pending = 0
            for step in range(1, min(gap, _BUCKETS) + 1):
                slot = (self._epoch + step) % _BUCKETS
                counts[slot] = counts[_BUCKETS + slot] = 0
            self._epoch = now_epoch
        self.next_at = (now_epoch + 1) * width

    def on_request(self, now: float) -> None:
        """Deposit a request's share; ``now`` is the clock's reading (called per request).

        A disabled budget counts too (it is cheaper than asking), but earns nothing.
        The count goes to ``pending``, an attribute: an item of the unboxed array
        costs twice as much to increment (about 0.6k instructions of a lean
        call). ``advance`` folds it into the newest bucket when the next one
        starts, and ``counts`` adds it meanwhile.
        """
        if now >= self.next_at:
            self.advance(now)
        self.pending += 1

    def counts(self) -> tuple[int, int]:
        """Requests and retries in the window now.

        Reads only: ``health()`` and the exporters ask from any thread without
        the key's lock, so the buckets that left the window since the last
        request are skipped here, not emptied.
        """
        now_epoch = int(self._clock() / (self.policy.window / _BUCKETS))
        gone = min(max(now_epoch - self._epoch, 0), _BUCKETS)  # buckets out of the window
        counts = self._counts
        newest = self._epoch % _BUCKETS
        live = [(newest - back) % _BUCKETS for back in range(_BUCKETS - gone)]
        requests = sum(counts[slot] for slot in live) + (self.pending if gone < _BUCKETS else 0)
        return requests, sum(counts[_BUCKETS + slot] for slot in live)

    def balance(self) -> float:
        """Tokens available now."""
        requests, retries = self.counts()
        policy = self.policy
        earned = requests * policy.ratio if policy.enabled else 0.0
        floor = policy.min_retries_per_second * policy.window
        return earned + floor - retries

    def try_spend(self) -> bool:
        """Withdraw one retry; ``False`` (and nothing spent) when the budget is empty."""
        if not self.policy.enabled:
            return True
        self.advance(self._clock())  # the retry lands in the current bucket
        if self.balance() < 1.0:
            return False
        self._counts[_BUCKETS + self._epoch % _BUCKETS] += 1
        return True

    @property
    def epoch(self) -> int:
        """The newest bucket's number: where ``try_spend`` put its retry (for ``give_back``)."""
        return self._epoch

    def give_back(self, epoch: int) -> None:
        """Undo a retry ``try_spend`` withdrew in bucket ``epoch`` that was never made (its
        call was cancelled or refused while it waited): the token is the next caller's.
        Nothing when that bucket has left the window. Under the key's lock."""
        if not self.policy.enabled:
            return
        self.advance(self._clock())
        if 0 <= self._epoch - epoch < _BUCKETS:
            slot = _BUCKETS + epoch % _BUCKETS
            if self._counts[slot]:
                self._counts[slot] -= 1
