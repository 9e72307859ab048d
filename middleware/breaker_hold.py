"""The breaker's recovery side: calls held for a probe's verdict, the ramp that
releases them after a recovery, and the request rate both are sized by.

``_Recovery`` is a part of ``seawall.breaker.Breaker`` (a mixin over its
slots), kept apart so that each module reads as one concern. No awaiting
here: held calls wait on futures (held threads on a ``ThreadWaiter``), ramp
turns are times to sleep until.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from seawall.breaker_parts import BreakerState, Counts, ThreadWaiter, Verdict, Waiter, _Held, _Ramp
from seawall.policy import BreakerPolicy

__all__ = ["DRAIN_SHARE", "HOLD_STRETCH", "MIN_SPAN", "RAMP", "RATE_HORIZON"]

#: Once a probe succeeds, held calls and then new arrivals leave in one queue
#: (the ramp) at this much more than the key's recent request rate: the
#: backlog drains at this share of the rate, and no one jumps it.
DRAIN_SHARE = 0.10
#: With no request rate known, held calls leave spread over this many seconds.
RAMP = 0.5
#: A closed breaker measures the request rate over at most this many seconds
#: before it opens (from the first failure of the streak that opens it).
RATE_HORIZON = 5.0
#: Shorter spans than this say too little about a rate to be measured.
MIN_SPAN = 0.05
#: With the request rate known, a call waits for the next probe's verdict up to
#: the probe interval, but never longer than this many ``hold``s.
HOLD_STRETCH = 4.0

_CLOSED = BreakerState.CLOSED


class _Recovery:
    """Held calls, the ramp and the request rate of one breaker (see ``Breaker``)."""

    __slots__ = ("_calls", "_held", "_mark", "_ramp", "ramp_until", "rate")

    #: The key's recent request rate (calls/s), measured around openings; 0: unknown.
    rate: float
    #: While new calls queue in the ramp after a close, its next free turn
    #: (this clock; in the past after a stall); 0.0 when they do not.
    ramp_until: float
    _held: _Held | None
    _ramp: _Ramp | None  # the turns of the held calls and the queued arrivals; None once over
    # ``rate`` is measured from the calls started on the key (None: not measured) since
    # the mark (when, calls counted then). Two slots, not an object of their own: a
    # key's state is counted in bytes (docs/architecture.md, "State size").
    _calls: Counts | None
    _mark: tuple[float, int] | None

    # Set by ``Breaker.__init__``, in its slots.
    policy: BreakerPolicy
    state: BreakerState
    _clock: Callable[[], float]

    @property
    def held(self) -> int:
        """Calls waiting for a probe's verdict now."""
        return self._held.live() if self._held is not None else 0

    # --- held calls -----------------------------------------------------------

    def hold(self, until: float) -> asyncio.Future[Verdict] | None:
        """Wait for the next probe's verdict until ``until`` (this clock): a future, or
        ``None`` when the call must fail at once (``hold=0``, or ``hold_max_calls`` wait).

        The future gives the time at which to ask ``admit`` again (paced after
        a success; now when a probe permit is free), or ``None``: fail. A
        caller that stops waiting gives it back with ``unhold``.
        """
        held = self._held_queue()
        if held is None:
            return None
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        held.queue.append((until, future))
        return future

    def hold_thread(self, until: float) -> ThreadWaiter | None:
        """``hold`` for a thread (a sync form's call): a waiter to block on, or ``None``.

        Held threads and held async calls wait in one queue, first come first
        served, and count alike against ``hold_max_calls``.
        """
        held = self._held_queue()
        if held is None:
            return None
        waiter = ThreadWaiter()
        held.queue.append((until, waiter))
        return waiter

    def _held_queue(self) -> _Held | None:
        """The queue a new held call joins, or ``None``: it must fail at once."""
        policy = self.policy
        if not policy.hold or self.state is _CLOSED:
            return None
        held = self._held
        if held is None:
            held = self._held = _Held()
        else:
            held.expire(self._clock())
            if len(held.queue) >= policy.hold_max_calls and held.live() >= policy.hold_max_calls:
                return None
        return held

    @staticmethod
    def unhold(future: Waiter) -> None:
        """A held call stopped waiting (timed out, cancelled, took a probe): no trace left."""
        if not future.done():
            future.cancel()

    def _release_held(self, now: float) -> None:
        """The breaker closed: held calls go one by one, paced, and new arrivals queue
        behind them (``turn``) until the backlog has drained (the ramp)."""
        held, self._held = self._held, None
        if held is None:
            return
        held.expire(now)
        count = held.live()
        if count:
            rate = self.rate
            # No rate to queue new arrivals at: spread the held calls only.
            gap = 1.0 / ((1.0 + DRAIN_SHARE) * rate) if rate > 0 else RAMP / count
            ramp = self._ramp = _Ramp(now, gap)
            held.answer(count, lambda _: ramp.book(now))
            if rate > 0:
                self.ramp_until = ramp.line

    def turn(self) -> float | None:
        """A new call during the ramp: its ticket (when its turn is due), or ``None``: go now.

        The call sleeps until the ticket and leaves through ``depart``. The
        ramp ends when nobody waits in it any more, or when the next turn is
        further away than a hold (the rate was measured too low for the queue
        to drain) or more than a hold behind (nobody is left to wait for).
        """
        ramp = self._ramp
        now = self._clock()
        if ramp is None or ramp.drained(now) or abs(ramp.line - now) > self.hold_span():
            self.ramp_until = 0.0
            if ramp is not None and not ramp.pending:
                self._ramp = None  # over, nobody to space: no bytes kept for it
            return None
        ticket = ramp.book(now)
        self.ramp_until = ramp.line
        return ticket

    def depart(self) -> float:
        """A call whose ramp ticket is due leaves: seconds to wait first (0: go now).

        Departures keep a gap apart however late the loop woke their callers.
        """
        ramp = self._ramp
        if ramp is None:
            return 0.0
        wait = ramp.depart(self._clock())
        self._drop_ramp_if_over(ramp)
        return wait

    def leave_turn(self) -> None:
        """A call with a ramp ticket stopped waiting (cancelled, out of time)."""
        ramp = self._ramp
        if ramp is not None:
            ramp.leave()
            self._drop_ramp_if_over(ramp)

    def _drop_ramp_if_over(self, ramp: _Ramp) -> None:
        """The last ticket holder left and no new arrivals queue (no rate known, or the
        ramp ended for them): the ramp is over; no bytes kept for it."""
        if not ramp.pending and not self.ramp_until:
            self._ramp = None

    def end_ramp(self) -> None:
        """End the ramp: a cooldown paces the key (it knows the upstream's limit).

        New calls no longer queue; calls already waiting for a turn go on to
        the cooldown when their turn comes, without the ramp's spacing.
        """
        self.ramp_until = 0.0
        self._ramp = None

    def _fail_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.answer(len(held.queue), lambda _: None)

    # --- the request rate --------------------------------------------------------

    def _start_measuring(self) -> None:
        """A failure while closed: measure the rate from here if no measure is recent."""
        calls = self._calls
        if calls is not None:
            now, mark = self._clock(), self._mark
            if mark is None or now - mark[0] > RATE_HORIZON:
                self._mark = (now, calls.requests)

    def _measure(self, now: float) -> None:
        """Fold the rate since the mark into ``rate`` and start the next measurement."""
        calls, mark = self._calls, self._mark
        if calls is None:
            return
        if mark is not None and now - mark[0] >= MIN_SPAN:
            measured = (calls.requests - mark[1]) / (now - mark[0])
            self.rate = measured if not self.rate else (self.rate + measured) / 2
        self._mark = (now, calls.requests)

    def hold_span(self) -> float:
        """How long a call may wait for a probe's verdict (before its deadline).

        ``hold``; with the request rate known, stretched to the probe interval
        (at most ``HOLD_STRETCH`` holds), so that under traffic every call
        that meets an open breaker waits for the next verdict: a call that
        fails at once because the next probe is a little further than
        ``hold`` is a call lost after a recovery. The wait costs no upstream
        call; ``hold_max_calls`` still bounds the callers that wait.
        """
        policy = self.policy
        span = policy.hold
        if span and self.rate > 0 and policy.probe_share:
            span = max(span, min(self.probe_interval(), HOLD_STRETCH * span))
        return span

    def probe_interval(self) -> float:
        """Seconds from an opening to the next probe, before jitter.

        ``recovery_timeout``, shortened under load to one probe per
        ``probe_share`` of the requests, but no shorter than ``hold``.
        """
        policy = self.policy
        interval = policy.recovery_timeout
        if policy.probe_share and self.rate > 0:
            interval = min(interval, max(policy.hold, 1.0 / (policy.probe_share * self.rate)))
        return interval
