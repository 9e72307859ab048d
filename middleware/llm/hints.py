"""When a provider's rate-limit headers are proved wrong: by requests that succeed.

Headers saying ``remaining`` m of ``limit`` L, full again in ``reset`` R
seconds, claim a bucket holding ``x`` requests, ``m <= x < m + 1``
(providers count whole requests), that refills at ``(L - x) / R`` a second
at most. So ``k`` more requests cannot all succeed before ``(k - x) * R /
(L - x)`` seconds, whatever ``x`` was: ``m + 2`` of them before ``R / (L - m
- 1)``, or, when ``L`` is ``m + 1``, ``m + 1`` before ``R`` (the least
number that proves anything: the bucket may have held ``m + 0.99``).

The moment the headers describe lies between the sending of the request
that brought them and their answer; a request sent later than that answer
(by the clock) reaches the upstream after it and before its own answer. So
successes of such requests, answered before the bound counted from the first
request's sending, prove the headers wrong for the key, as a 429 proves a
pace too fast. Other clients sharing the limit only take successes away:
true headers are never proved wrong, however the key is paced.
``seawall.cooldown`` believes no rate headers of a key for a while after
such a proof (``RateHints.distrust``).
"""

from __future__ import annotations

from seawall.llm import RateInfo

__all__ = ["RateHints"]

_NEVER = float("-inf")


class RateHints:
    """What one key's rate headers stated, and their test; made when the first come (a
    key without them stays small)."""

    __slots__ = ("burst", "by", "distrust", "proof", "since")

    def __init__(self) -> None:
        #: The limit stated, while a rate stated with it paces the key (else 1).
        self.burst = 1.0
        #: The headers on test were answered at ``since``; successes of requests sent
        #: later and answered before ``by`` prove them wrong, ``proof`` more of them.
        self.since = self.by = _NEVER
        self.proof = 0
        #: The key's rate headers are not believed before this (its cooldown's clock).
        self.distrust = _NEVER

    def refutes(self, info: RateInfo | None, now: float, sent_at: float) -> bool:
        """A request sent at ``sent_at`` succeeded, answered at ``now`` with ``info``:
        whether it proves the headers on test wrong.

        ``info`` goes on test when none are, or when fewer successes would prove
        it wrong than the headers on test still need (at once after a proof:
        every answer of an upstream that keeps lying is tested).
        """
        refuted = False
        if now < self.by and sent_at > self.since:
            self.proof -= 1
            if self.proof <= 0:
                refuted = True
                self.by = _NEVER
        if info is not None:
            self._put(info, now, sent_at)
        return refuted

    def _put(self, info: RateInfo, now: float, sent_at: float) -> None:
        limit, left, reset = info.limit, info.remaining, info.reset
        if reset is None or not reset > 0 or left >= limit:
            return  # no rate stated
        if limit - left == 1:
            proof, span = left + 1, reset
        else:
            proof, span = left + 2, reset / (limit - left - 1)
        if now < self.by and proof >= self.proof:
            return  # the headers on test are as near a proof
        self.since, self.by, self.proof = now, sent_at + span, proof
