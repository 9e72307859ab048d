"""The retry budget of one key: retries may be at most a share of requests.

Each request deposits ``ratio`` tokens and each retry withdraws one, over a
sliding window of ``window`` seconds kept in ten buckets; a floor of
``min_retries_per_second * window`` tokens lets a quiet key retry at all.
Under sustained total failure, upstream calls per request therefore approach
``1 + ratio`` rather than ``max_attempts``.
"""

from __future__ import annotations

from collections.abc import Callable

from seawall.policy import BudgetPolicy

__all__ = ["RetryBudget"]

_BUCKETS = 10


class RetryBudget:
    """Token accounting for one key over a sliding window."""

    def __init__(self, policy: BudgetPolicy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self._clock = clock
        self._width = policy.window / _BUCKETS
        self._requests = [0] * _BUCKETS
        self._retries = [0] * _BUCKETS
        self._epoch = int(clock() / self._width)  # index of the newest bucket
        self.exhausted_count = 0

    def _advance(self, now: float | None = None) -> int:
        now_epoch = int((self._clock() if now is None else now) / self._width)
        gap = now_epoch - self._epoch
        if gap > 0:
            for step in range(1, min(gap, _BUCKETS) + 1):
                slot = (self._epoch + step) % _BUCKETS
                self._requests[slot] = 0
                self._retries[slot] = 0
            self._epoch = now_epoch
        return now_epoch % _BUCKETS

    def on_request(self, now: float | None = None) -> None:
        """Deposit a request's share (``now``: the clock's reading, if the caller has it)."""
        if self.policy.enabled:
            self._requests[self._advance(now)] += 1

    def balance(self) -> float:
        """Tokens available now."""
        self._advance()
        policy = self.policy
        earned = sum(self._requests) * policy.ratio
        floor = policy.min_retries_per_second * policy.window
        return earned + floor - sum(self._retries)

    def try_spend(self) -> bool:
        """Withdraw one retry; ``False`` (and nothing spent) when the budget is empty."""
        if not self.policy.enabled:
            return True
        if self.balance() < 1.0:
            self.exhausted_count += 1
            return False
        self._retries[self._epoch % _BUCKETS] += 1
        return True
