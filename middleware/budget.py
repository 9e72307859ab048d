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
        "_next_at",
        "_slot",
        "policy",
    )

    def __init__(self, policy: BudgetPolicy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self._clock = clock
        self._counts = _EMPTY[:]  # requests at [slot], retries at [_BUCKETS + slot]
        self._epoch = 0  # index of the newest bucket
        self._slot = 0  # where it is in the buckets
        self._next_at = 0.0  # when the next bucket starts
        self._advance(clock())

    def _advance(self, now: float) -> None:
        width = self.policy.window / _BUCKETS  # (computed: a float per key costs 24 B)
        now_epoch = int(now / width)
        gap = now_epoch - self._epoch
        if gap > 0:
            counts = self._counts
            for step in range(1, min(gap, _BUCKETS) + 1):
                slot = (self._epoch + step) % _BUCKETS
                counts[slot] = counts[_BUCKETS + slot] = 0
            self._epoch = now_epoch
            self._slot = now_epoch % _BUCKETS
        self._next_at = (now_epoch + 1) * width

    def on_request(self, now: float) -> None:
        """Deposit a request's share; ``now`` is the clock's reading (called per request).

        A disabled budget counts too (it is cheaper than asking), but earns nothing.
        """
        if now >= self._next_at:
            self._advance(now)
        self._counts[self._slot] += 1

    def counts(self) -> tuple[int, int]:
        """Requests and retries in the window now."""
        self._advance(self._clock())
        counts = self._counts
        return sum(counts[:_BUCKETS]), sum(counts[_BUCKETS:])

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
        if self.balance() < 1.0:
            return False
        self._counts[_BUCKETS + self._slot] += 1
        return True
