"""The circuit breaker of one key: closed, open, half-open.

Not thread-safe by design: one breaker lives on one event loop, and every
method runs without awaiting, so no lock is needed.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable

import attrs

from seawall.policy import BreakerPolicy

__all__ = ["Breaker", "BreakerState", "Permit", "Transition", "seed"]

#: The recovery jitter's random numbers, shared by every breaker: one
#: ``random.Random`` per breaker was 2.9 KB of a key's state. Seeded from the
#: OS per process, so processes of a fleet still probe out of step.
_rng = random.Random()


def seed(value: int | None) -> None:
    """Seed the recovery jitter of every breaker that has no ``rng`` of its own (tests, demos)."""
    _rng.seed(value)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


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
    """

    __slots__ = ("done", "probe")

    def __init__(self, probe: bool) -> None:
        self.probe = probe
        self.done = False


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


#: The permit of every attempt admitted by a closed (or disabled) breaker.
CLOSED_PERMIT = Permit(False)

# Enum members read through the class cost a descriptor call each on 3.11;
# the request path reads these instead.
_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN


class Breaker:
    """Counts failures of one key and decides whether to let calls through."""

    __slots__ = (
        "_clock",
        "_failures_in_window",
        "_on_transition",
        "_probe_successes",
        "_probes",
        "_reopen_at",
        "_rng",
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
    ) -> None:
        self.key = key
        self.policy = policy
        self._clock = clock
        self._on_transition = on_transition
        self._rng = rng or _rng
        self.state = _CLOSED
        self.consecutive_failures = 0
        self._window = _Window(policy.window)
        self._failures_in_window = 0
        #: A success of a closed-breaker attempt would change nothing: the
        #: window is full of successes and no call failed since (see ``succeeded``).
        self.quiet = False
        self.opened_at: float | None = None
        self._reopen_at = 0.0
        self._probes = 0
        self._probe_successes = 0

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

    # --- the request path ---------------------------------------------------

    def admit(self) -> Permit | None:
        """A permit for one attempt, or ``None`` to reject it.

        Open: rejected until the recovery timeout passes, then half-open.
        Half-open: at most ``half_open_max_calls`` probes at once; the rest are
        rejected, not queued.
        """
        if self.state is _CLOSED or not self.policy.enabled:
            return CLOSED_PERMIT
        if self.state is _OPEN:
            if self._clock() < self._reopen_at:
                return None
            self._move(_HALF_OPEN)
        if self._probes >= self.policy.half_open_max_calls:
            return None
        self._probes += 1
        return Permit(True)

    def release(self, permit: Permit) -> None:
        """Give a permit back without a verdict (cancelled, or not about the upstream)."""
        if not permit.probe or permit.done:
            return
        permit.done = True
        if self.state is _HALF_OPEN:
            self._probes = max(0, self._probes - 1)

    def record(self, permit: Permit, *, failure: bool) -> None:
        """Record an attempt's verdict: a failure or a success of the upstream."""
        if self.quiet and not failure and not permit.probe:
            return  # a success would change nothing (see ``succeeded``)
        if permit.probe:
            if permit.done:
                return
            self.release(permit)
        if not self.policy.enabled:
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
        if self.state is _CLOSED and self.policy.enabled:
            window = self._window
            if self._failures_in_window and len(window) == window.maxlen and window[0]:
                self._failures_in_window -= 1
            window.append(False)
            self.consecutive_failures = 0
            self.quiet = not self._failures_in_window and len(window) == window.maxlen

    def call_failed(self) -> None:
        """A whole call gave up on a failure that counts (after its retries).

        The consecutive rule counts calls, not attempts: with retries, random
        errors make runs of failed *attempts* common at high request rates (at
        30 % errors, five in a row happen several times a minute at 200
        requests/s), while five failed *calls* in a row mean the upstream is
        really down. Half-open probes and the failure rate still count attempts.
        """
        if not self.policy.enabled or self.state is not _CLOSED:
            return
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
            self.quiet = False
        else:
            self.consecutive_failures = 0
            self.quiet = not self._failures_in_window and len(self._window) == self._window.maxlen

    def _rate_tripped(self) -> bool:
        policy = self.policy
        return (
            len(self._window) >= policy.minimum_calls and self.failure_rate >= policy.failure_rate
        )

    def _open(self) -> None:
        now = self._clock()
        # Jitter the recovery down by up to 20 %, so that a fleet does not probe in step.
        timeout = self.policy.recovery_timeout * (1.0 - 0.2 * self._rng.random())
        self.opened_at = now
        self._reopen_at = now + timeout
        self._probes = 0
        self._probe_successes = 0
        self._move(_OPEN)

    def _close(self) -> None:
        self._window.clear()
        self.quiet = False
        self._failures_in_window = 0
        self.consecutive_failures = 0
        self._probes = 0
        self._probe_successes = 0
        self.opened_at = None
        self._move(_CLOSED)

    def _move(self, new: BreakerState) -> None:
        old, self.state = self.state, new
        if old is new:
            return
        if new is _HALF_OPEN:
            self._probes = 0
            self._probe_successes = 0
        if self._on_transition is not None:
            self._on_transition(
                Transition(self.key, old, new, self.failure_rate, self.consecutive_failures)
            )
