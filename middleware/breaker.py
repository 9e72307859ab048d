"""The circuit breaker of one key: closed, open, half-open; or adaptive throttling.

Not thread-safe by design: one breaker lives on one event loop, and every
method runs without awaiting, so no lock is needed. Calls held for a probe's
verdict wait on futures its ``_Recovery`` part resolves (``hold``, in
``seawall.breaker_hold``); the waiting itself is the request path's
(``seawall._path.hold``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs

from seawall.breaker_hold import DRAIN_SHARE, HOLD_STRETCH, RAMP, _Recovery
from seawall.breaker_parts import BreakerState, Counts, _Throttle, _Window
from seawall.policy import BreakerPolicy

__all__ = [
    "DRAIN_SHARE",
    "HOLD_STRETCH",
    "RAMP",
    "Breaker",
    "BreakerState",
    "Counts",
    "Permit",
    "Transition",
    "seed",
]

#: The recovery jitter's random numbers, shared by every breaker: one
#: ``random.Random`` per breaker was 2.9 KB of a key's state. Seeded from the
#: OS per process, so processes of a fleet still probe out of step.
_rng = random.Random()


def seed(value: int | None) -> None:
    """Seed the recovery jitter of every breaker that has no ``rng`` of its own (tests, demos)."""
    _rng.seed(value)


@attrs.frozen
class Transition:
    """A state change, reported to ``seawall_event`` and the metrics."""

    key: str
    old: BreakerState
    new: BreakerState
    failure_rate: float
    consecutive_failures: int


class Permit:
    """Leave to make one attempt; give it back with ``Breaker.record``/``release``.

    Only half-open probes are counted, so only they track being given back
    (``done``); every attempt admitted while closed shares ``CLOSED_PERMIT``.
    ``lapsed``: a lent probe whose turn ran out (``Breaker.lend``): its
    attempt's verdict, and its call's, are stale news.
    """

    __slots__ = ("done", "lapsed", "probe")

    def __init__(self, probe: bool) -> None:
        self.probe = probe
        self.done = False
        self.lapsed = False


#: The permit of every attempt admitted by a closed (or disabled) breaker.
CLOSED_PERMIT = Permit(False)

# Enum members read through the class cost a descriptor call each on 3.11;
# the request path reads these instead.
_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN


class Breaker(_Recovery):
    """Counts failures of one key and decides whether to let calls through.

    Holding calls for a probe's verdict, the ramp after a recovery and the
    request rate are its ``_Recovery`` part (``seawall.breaker_hold``).
    """

    __slots__ = (
        "_clock",
        "_failures_in_window",
        "_lent",
        "_on_transition",
        "_probe_successes",
        "_probes",
        "_reopen_at",
        "_rng",
        "_run",
        "_throttle",
        "_window",
        "consecutive_failures",
        "key",
        "opened_at",
        "policy",
        "quiet",
        "state",
    )

    def __init__(
        self,
        key: str,
        policy: BreakerPolicy,
        clock: Callable[[], float],
        on_transition: Callable[[Transition], None] | None = None,
        rng: random.Random | None = None,
        calls: Counts | None = None,
    ) -> None:
        self.key = key
        self.policy = policy
        self._clock = clock
        self._on_transition = on_transition
        self._rng = rng or _rng
        self.state = _CLOSED
        self.consecutive_failures = 0
        self._run = 0  # failed attempts in a row (a run of minimum_calls trips)
        self._window = _Window(policy.window)
        self._failures_in_window = 0
        #: A success of a closed-breaker attempt would change nothing: the
        #: window is full of successes and no call failed since (see ``succeeded``).
        self.quiet = False
        self.opened_at: float | None = None
        self._reopen_at = 0.0
        self._probes = 0
        self._probe_successes = 0
        self._calls = calls
        self._mark = None
        self.rate = 0.0
        self._held = None
        self.ramp_until = 0.0
        self._ramp = None
        self._throttle = _Throttle(policy.throttle_window) if policy.mode == "adaptive" else None
        #: Probes out to attempts nobody can cut short (a thread's), with when their time
        #: limit passes (``lend``); ``None`` while there are none.
        self._lent: list[tuple[float, Permit]] | None = None

    # --- questions -------------------------------------------------------

    @property
    def failure_rate(self) -> float:
        """Share of failures among the calls in the window (0 when empty)."""
        return self._failures_in_window / len(self._window) if self._window else 0.0

    def retry_after(self) -> float:
        """Seconds until a probe may pass (0 unless open)."""
        if self.state is _OPEN:
            return max(0.0, self._reopen_at - self._clock())
        return 0.0

    def is_open(self) -> bool:
        """True while calls are rejected outright (open and not yet due a probe)."""
        return self.state is _OPEN and self._clock() < self._reopen_at

    def verdict_in(self) -> float | None:
        """Seconds until a probe's verdict may come: 0 while half-open, the time to
        the next probe while open, ``None`` when none is coming (closed, adaptive)."""
        if self.state is _OPEN:
            return max(0.0, self._reopen_at - self._clock())
        if self.state is _HALF_OPEN:
            return 0.0
        return None

    def turn_in(self) -> float | None:
        """Seconds until a probe's turn may come free with no verdict given: while open,
        until the next probe is due; while half-open, until the soonest time limit of a
        probe lent out (``lend``); ``None`` when only a verdict or a probe given back
        frees one. A held call wakes then to ask ``admit`` again (``seawall._path.hold``)."""
        if self.state is _OPEN:
            return max(0.0, self._reopen_at - self._clock())
        lent = self._lent
        if self.state is not _HALF_OPEN or lent is None:
            return None
        dues = [due for due, permit in lent if not permit.done]
        return max(0.0, min(dues) - self._clock()) if dues else None

    # --- the request path ---------------------------------------------------

    def admit(self) -> Permit | None:
        """A permit for one attempt, or ``None`` to reject it.

        Open: rejected until the recovery timeout passes, then half-open.
        Half-open: at most ``half_open_max_calls`` probes at once; the rest are
        rejected, not queued.
        """
        if self.state is _CLOSED or not self.policy.enabled:
            throttle = self._throttle
            if throttle is not None and self.policy.enabled:
                now = self._clock()
                refusal = throttle.refusal(now, self.policy.k)
                if refusal and self._rng.random() < refusal:
                    throttle.add(now, False)  # local rejections count as requests (SRE)
                    return None
            return CLOSED_PERMIT
        if self.state is _OPEN:
            if self._clock() < self._reopen_at:
                return None
            self._move(_HALF_OPEN)
        if self._probes >= self.policy.half_open_max_calls and not (
            self._lent is not None and self._reclaim()
        ):
            return None
        self._probes += 1
        return Permit(True)

    def lend(self, permit: Permit, due: float) -> None:
        """The probe ``permit`` went to an attempt that nobody can cut short (a thread's, or
        the body of ``async with sw.breaker(key)`` or of the block form's ``with attempt``):
        past ``due``, its time limit, its turn is free for another probe (``admit``).

        ``sw.call``'s probe is cut short at its limit and gives its turn up; a thread or a
        block that hangs (a read without a timeout) would hold it for as long as it hangs,
        and the key would refuse every caller though the upstream had recovered.
        The late attempt's verdict, when it comes, is stale news (``record``,
        ``call_failed``: the permit has ``lapsed``). Calls held for the verdict wait no
        longer than ``due`` (``turn_in``); those held before the lend are woken to ask
        again, and so learn it.
        """
        if permit.probe and not permit.done:
            # Those given back meanwhile (a verdict, an interrupt) go: the list holds at
            # most the probes out, whatever happens to the ones before.
            lent = [entry for entry in self._lent or () if not entry[1].done]
            lent.append((due, permit))
            self._lent = lent
            if self._held is not None:  # held before this lend: they wake at its end now
                self._held.answer(len(self._held.queue), lambda _: self._clock())

    def _reclaim(self) -> bool:
        """Free the turns of lent probes past their time limit; whether one is free now."""
        lent, now = self._lent or [], self._clock()
        kept = []
        for due, permit in lent:
            if permit.done:
                continue
            if due <= now:
                permit.done = permit.lapsed = True  # its verdict will change nothing
                self._probes = max(0, self._probes - 1)
            else:
                kept.append((due, permit))
        self._lent = kept or None
        return self._probes < self.policy.half_open_max_calls

    def release(self, permit: Permit) -> None:
        """Give a permit back without a verdict (cancelled, or not about the upstream)."""
        if self._give_back(permit) and self._held is not None:
            self._held.answer(1, lambda _: self._clock())  # a held call may take it over

    def _give_back(self, permit: Permit) -> bool:
        """Count a probe permit as given back; whether it was a half-open probe's."""
        if not permit.probe or permit.done:
            return False
        permit.done = True
        if self.state is _HALF_OPEN:
            self._probes = max(0, self._probes - 1)
            return True
        return False

    def record(self, permit: Permit, *, failure: bool) -> None:
        """Record an attempt's verdict: a failure or a success of the upstream."""
        if self.quiet and not failure and not permit.probe:
            return  # a success would change nothing (see ``succeeded``)
        if permit.probe:
            if permit.done:
                return
            self._give_back(permit)
        if not self.policy.enabled:
            return
        if self._throttle is not None:
            self._throttle.add(self._clock(), not failure)
            return
        if self.state is _HALF_OPEN:
            if not permit.probe:
                return  # admitted before the breaker opened: stale news
            if failure:
                self._open()
            else:
                self._probe_successes += 1
                if self._probe_successes >= self.policy.success_threshold:
                    self._close()
                elif self._held is not None:  # more probes wanted: held calls may be them
                    free = self.policy.half_open_max_calls - self._probes
                    self._held.answer(free, lambda _: self._clock())
            return
        if self.state is _OPEN:
            return
        self._count(failure)
        if failure and self._rate_tripped():
            self._open()

    def succeeded(self) -> None:
        """``record(CLOSED_PERMIT, failure=False)``, for the success path: cheaper, same effect.

        Callers may skip it while ``quiet``: it would change nothing then.
        """
        if self._throttle is not None:
            self._throttle.add(self._clock(), True)
        elif self.state is _CLOSED and self.policy.enabled:
            window = self._window
            if self._failures_in_window and len(window) == window.maxlen and window[0]:
                self._failures_in_window -= 1
            window.append(False)
            self.consecutive_failures = self._run = 0
            self.quiet = not self._failures_in_window and len(window) == window.maxlen

    def call_failed(self, permit: Permit = CLOSED_PERMIT) -> None:
        """A whole call gave up on a failure that counts (after its retries);
        ``permit``: its last attempt's (a probe that lapsed brings stale news: ignored).

        The consecutive rule counts calls, not attempts: with retries, random
        errors make runs of failed *attempts* common at high request rates (at
        30 % errors, five in a row happen several times a minute at 200
        requests/s), while five failed *calls* in a row mean the upstream is
        really down. Half-open probes and the failure rate still count attempts.
        """
        if permit.lapsed:
            return  # its turn ran out (``lend``): another probe's verdict stands
        if not self.policy.enabled or self.state is not _CLOSED or self._throttle is not None:
            return
        self._start_measuring()
        self.consecutive_failures += 1
        self.quiet = False
        if self.consecutive_failures >= self.policy.failure_threshold:
            self._open()

    # --- internals ----------------------------------------------------------

    def _count(self, failure: bool) -> None:
        if len(self._window) == self._window.maxlen and self._window[0]:
            self._failures_in_window -= 1
        self._window.append(failure)
        if failure:
            self._failures_in_window += 1
            self._run += 1
            self.quiet = False
            self._start_measuring()
        else:
            self.consecutive_failures = self._run = 0
            self.quiet = not self._failures_in_window and len(self._window) == self._window.maxlen

    def _rate_tripped(self) -> bool:
        """The failure rate reached its threshold, or the last ``minimum_calls`` attempts all
        failed: a dead upstream trips at once, not after half a window of successes
        has been outweighed (random errors almost never fail 20 attempts in a row)."""
        policy = self.policy
        return self._run >= policy.minimum_calls or (
            len(self._window) >= policy.minimum_calls and self.failure_rate >= policy.failure_rate
        )

    def _open(self) -> None:
        now = self._clock()
        self.ramp_until = 0.0
        self._ramp = None
        self._measure(now)
        # Jitter the recovery down by up to 20 %, so that a fleet does not probe in step.
        timeout = self.probe_interval() * (1.0 - 0.2 * self._rng.random())
        self.opened_at = now
        self._reopen_at = now + timeout
        self._probes = 0
        self._probe_successes = 0
        self._move(_OPEN)
        self._fail_held()

    def _close(self) -> None:
        self._window.clear()
        self.quiet = False
        self._failures_in_window = 0
        self.consecutive_failures = self._run = 0
        self._probes = 0
        self._probe_successes = 0
        self.opened_at = None
        now = self._clock()
        self._measure(now)
        self._mark = None
        self._move(_CLOSED)
        self._release_held(now)

    def _move(self, new: BreakerState) -> None:
        old, self.state = self.state, new
        if old is new:
            return
        self._lent = None  # lent probes belong to the half-open spell that is over
        if new is _HALF_OPEN:
            self._probes = 0
            self._probe_successes = 0
        if self._on_transition is not None:
            self._on_transition(
                Transition(self.key, old, new, self.failure_rate, self.consecutive_failures)
            )
