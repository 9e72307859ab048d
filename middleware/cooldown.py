"""The shared cooldown of one key: after a 429 with a wait, everyone waits, then goes paced.

When one request learns that the upstream wants a pause (``Retry-After`` on a
429), every other request to the same key waits until that moment instead of
hammering the upstream, or fails fast when its deadline is shorter.

A plain shared "until" is not enough: when it passes, every waiting caller
fires at once and most of them meet another 429. So callers do not just wait,
they *reserve*: each takes one token from a local mirror of the upstream's
token bucket and, when none is left, the next free slot ``1 / rate`` seconds
after the previous one (GCRA). The rate is learnt, best first:

1. from rate-limit headers (``RateInfo``: OpenAI's ``x-ratelimit-*``,
   Anthropic's ``anthropic-ratelimit-*``), seen on every response of the key,
   successes included: the rate, the burst (``limit``) and what is left
   (``remaining`` less the requests still in flight, which the upstream may
   not have counted yet);
2. without such headers, from short 429 waits (at most ``GUESS_MAX_WAIT``):
   an upstream that says "come back in 20 ms" refills at most one request per
   20 ms, so the longest such wait bounds the rate. The guess then follows
   AIMD: it doubles every ``GUESS_DOUBLING`` seconds without a 429 (so a
   wrong guess, e.g. from a fixed-window limiter whose wait says when the
   next window opens, not how fast it refills, mends itself in seconds), is
   cut by ``GUESS_DECREASE`` on a 429, and is dropped after ``GUESS_TTL``
   seconds without a 429. A guess only paces: a caller whose paced turn
   would miss its deadline still goes at the shared "until" instead of
   failing fast, since only the server's own word justifies refusing a call;
3. otherwise there is no pacing, only the shared "until".

Pacing uses ``SAFETY`` of the learnt rate, so that small timing differences
between our clock and the upstream's do not cost 429s.

No server hint can take a key down: every wait the cooldown hands out is at
most ``max_wait`` (the policy's ``retry_after_max``), a learnt rate never
falls below one request per ``max_wait`` (``floor``), and a rate learnt from
headers is forgotten ``HINT_TTL`` seconds after the last headers that stated
it. A 200 saying "0 requests left, reset in 10^12 s" therefore costs callers
at most one ``max_wait`` each, never a hang or a key that refuses every call.
"""

from __future__ import annotations

from collections.abc import Callable

from seawall.llm import RateInfo

__all__ = [
    "GUESS_DECREASE",
    "GUESS_DECREASE_SPACING",
    "GUESS_DOUBLING",
    "GUESS_MAX_WAIT",
    "GUESS_TTL",
    "HINT_TTL",
    "SAFETY",
    "Cooldown",
]

#: Share of the learnt rate that pacing uses.
SAFETY = 0.9

#: 429 waits (seconds) shorter than this bound the rate when no headers say it.
GUESS_MAX_WAIT = 1.0

#: Seconds without a 429 in which a guessed rate doubles.
GUESS_DOUBLING = 10.0

#: Factor by which a 429 cuts a guessed rate (multiplicative decrease).
GUESS_DECREASE = 0.9

#: Seconds between two cuts of a guessed rate (one overshoot often costs a few 429s).
GUESS_DECREASE_SPACING = 0.1

#: Seconds without a 429 after which a guessed rate is forgotten.
GUESS_TTL = 10.0

#: Seconds after the last rate headers after which the rate they stated is forgotten.
HINT_TTL = 60.0

#: ``max_wait`` when none is given: ``RetryPolicy.retry_after_max``'s default.
_DEFAULT_MAX_WAIT = 60.0


class Cooldown:
    """When the key may be called again, and at what pace, on the engine's clock."""

    __slots__ = (
        "_clock",
        "_decreased_at",
        "_guessed_at",
        "_hinted_at",
        "_last",
        "_tokens",
        "burst",
        "inflight",
        "max_wait",
        "rate",
        "rejected",
        "until",
    )

    def __init__(self, clock: Callable[[], float], max_wait: float = _DEFAULT_MAX_WAIT) -> None:
        if not max_wait >= 0:  # also refuses NaN
            msg = f"Cooldown(max_wait={max_wait!r}): give the longest wait in seconds, >= 0"
            raise ValueError(msg)
        self._clock = clock
        #: The longest wait handed out (the policy's ``retry_after_max``).
        self.max_wait = max_wait
        self.until = 0.0
        #: Requests per second the upstream allows, once learnt (``None``: no pacing).
        self.rate: float | None = None
        #: Most requests the upstream takes at once (its limit), once learnt.
        self.burst = 1.0
        #: Attempts sent and not answered yet.
        self.inflight = 0
        #: Reservations refused because they did not fit a caller's deadline.
        self.rejected = 0
        self._tokens = 0.0
        self._last = 0.0
        self._guessed_at: float | None = None  # when a rate was last guessed from a 429
        self._hinted_at = 0.0  # when rate headers last stated the rate
        self._decreased_at = 0.0

    @property
    def floor(self) -> float:
        """The lowest rate kept: one request per ``max_wait`` (with ``SAFETY``) at least."""
        return 1.0 / (self.max_wait * SAFETY) if self.max_wait > 0 else float("inf")

    def remaining(self) -> float:
        """Seconds left until the shared "until" (0 when the key is not cooling down)."""
        left = self.until - self._clock()
        return left if left > 0 else 0.0

    # --- before an attempt ----------------------------------------------------

    def _refill(self, now: float) -> None:
        rate = self.rate
        if rate is None:
            return
        guessed_at = self._guessed_at
        if guessed_at is not None:
            if now - guessed_at > GUESS_TTL:
                self.rate, self._guessed_at = None, None
                return
        elif now - self._hinted_at > HINT_TTL:
            self.rate = None
            return
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * rate * SAFETY)
            if guessed_at is not None:
                self.rate = rate * 2.0 ** (elapsed / GUESS_DOUBLING)
        self._last = now

    def reserve(self, max_wait: float | None = None) -> float:
        """Take a turn: the seconds to wait before sending (0: send now).

        :param max_wait: the most the caller can wait (its deadline). When the
            turn would come later, nothing is reserved and the (longer) wait
            is returned, so the caller can fail fast.
        """
        now = self._clock()
        until_wait = self.until - now
        rate = self.rate
        if rate is None:
            wait = until_wait if until_wait > 0 else 0.0
        else:
            self._refill(now)
            rate = self.rate
            if rate is None:
                wait = until_wait if until_wait > 0 else 0.0
            else:
                after = self._tokens - 1.0
                wait = max(until_wait, -after / (rate * SAFETY) if after < 0 else 0.0, 0.0)
                if max_wait is None or wait < max_wait:
                    self._tokens = after
                elif self._guessed_at is not None:
                    wait = until_wait if until_wait > 0 else 0.0  # a guess never refuses
        if wait > self.max_wait:
            wait = self.max_wait  # whatever the hints said or how far behind the pace is
        if max_wait is not None and wait >= max_wait > 0:
            self.rejected += 1
        return wait

    def sent(self) -> None:
        """An attempt is going out now."""
        self.inflight += 1

    # --- after an attempt -----------------------------------------------------

    def settle(self) -> None:
        """An attempt ended without telling us anything (an error, a cancellation)."""
        if self.inflight > 0:
            self.inflight -= 1

    def observe(self, info: RateInfo | None, *, success: bool) -> None:
        """An attempt was answered; ``info`` is what its rate-limit headers said."""
        self.settle()
        if info is not None:
            now = self._clock()
            rate = info.rate
            if rate is not None:
                if self.rate is None or self._guessed_at is not None:
                    self._tokens, self._last = float(info.remaining), now
                self.rate, self._guessed_at = max(rate, self.floor), None
                self._hinted_at = now
                self.burst = float(max(1, info.limit))
            if self.rate is not None:
                self._refill(now)
                self._tokens = min(self._tokens, float(info.remaining - self.inflight))

    def start(self, seconds: float) -> None:
        """A 429 asked for ``seconds``: every caller waits that long from now (a later end wins).

        The upstream's bucket is empty now, so the local mirror is emptied too.
        Without rate headers, a short wait bounds the rate from above (the
        next request is allowed in at most ``1 / rate`` seconds): the guess
        takes the tightest bound, and a 429 while already paced also cuts it
        by ``GUESS_DECREASE`` (at most once per ``GUESS_DECREASE_SPACING``).
        """
        if not seconds >= 0:  # a NaN or negative wait says nothing
            return
        now = self._clock()
        self.until = max(self.until, now + min(seconds, self.max_wait))
        if self.rate is not None and self._guessed_at is None:  # headers said the rate
            self._refill(now)
            self._tokens = min(self._tokens, 0.0)
            return
        if not 0 < seconds < GUESS_MAX_WAIT:
            return  # whole seconds say "wait", not how fast the upstream refills
        self._refill(now)
        bound = 1.0 / seconds
        if self.rate is None:
            self.rate, self._decreased_at = bound, now
        else:
            rate = min(self.rate, bound)
            if now - self._decreased_at >= GUESS_DECREASE_SPACING:
                rate, self._decreased_at = min(rate, self.rate * GUESS_DECREASE), now
            self.rate = max(rate, self.floor)
        self._guessed_at, self._last, self.burst = now, now, 1.0
        self._tokens = min(self._tokens, 0.0)
