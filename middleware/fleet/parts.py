"""A key's breaker as a fleet member, and the hub the fleet's parts report to.

``FleetBreaker`` is ``Breaker`` with the same methods: the request path calls
it exactly as in-process, and the success path runs the same code (no method
of it is overridden). What is added: ``_move`` (a breaker transition) tells the
store (the ``Hub``), which publishes the change; the store's background task
applies what the fleet decided (``adopt_open``, ``adopt_close``,
``await_lease``, ``own_clock``, ``grant``). The cooldown's counterpart is
``seawall.fleet.pacing``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from seawall.breaker import Breaker, BreakerState, Counts, Transition
from seawall.policy import BreakerPolicy

__all__ = ["FleetBreaker", "Hub"]

_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN


class Hub(Protocol):
    """What the parts tell the store (``FleetStore``)."""

    def moved(self, breaker: FleetBreaker, old: BreakerState, new: BreakerState) -> None: ...

    def cooled(self, key: str, seconds: float) -> None: ...

    def rated(
        self, key: str, rate: float, *, bound: bool = False, costly: bool = False
    ) -> None: ...

    def demanded(self, key: str) -> None: ...

    def crowded(self, key: str) -> None: ...


class FleetBreaker(Breaker):
    """A breaker whose transitions the fleet hears of, and which adopts the fleet's.

    While the store is linked to Redis, an open breaker *awaits the lease*: it
    does not go half-open on its own clock but when the store wins the fleet's
    probe lease (one probe per recovery interval for the fleet). Without Redis
    it runs on its own clock, like any breaker. (Not to be confused with the
    breaker's held *calls*, ``Breaker.hold``: those wait for a probe's verdict.)
    """

    __slots__ = (
        "_hub",
        "adopting",
        "awaiting",
        "due",
        "gen",
        "granted_at",
        "granted_until",
        "members",
        "voted_at",
        "voter",
    )

    def __init__(
        self,
        key: str,
        policy: BreakerPolicy,
        clock: Callable[[], float],
        on_transition: Callable[[Transition], None] | None,
        hub: Hub,
        calls: Counts | None = None,
    ) -> None:
        super().__init__(key, policy, clock, on_transition, calls=calls)
        self._hub = hub
        #: True while the store applies the fleet's decision (not news to publish).
        self.adopting = False
        #: When this open breaker is due a probe, on the local clock.
        self.due = 0.0
        #: The fleet's close generation last seen.
        self.gen = 0
        #: Open, and waiting for the fleet's probe lease.
        self.awaiting = False
        #: This process has failures of its own behind the open (its vote counts).
        self.voter = False
        self.voted_at = float("-inf")
        #: When this process last won the fleet's probe lease, and until when the lease lets
        #: it send the probe (local clock, converted from Redis's: a stalled loop's late
        #: caller must not probe on a lease that has run out).
        self.granted_at = float("-inf")
        self.granted_until = float("-inf")
        #: Processes of the fleet with this key open, as last read (1 when unknown): falling
        #: back while open, this process keeps its share of the fleet's probing.
        self.members = 1

    def _move(self, new: BreakerState) -> None:
        old = self.state
        super()._move(new)
        if old is not new and not self.adopting:
            self._hub.moved(self, old, new)

    @property
    def reopen_at(self) -> float:
        """When this breaker would let a probe through on its own (open only)."""
        return self._reopen_at

    def await_lease(self, until: float) -> None:
        """Keep an open breaker from probing on its own before ``until`` (the store renews it)."""
        if self.state is _OPEN:
            self.awaiting = True
            self._reopen_at = until
            self.granted_until = float("-inf")

    def own_clock(self, now: float, members: int) -> None:
        """Let an open breaker go on its own clock again (Redis is out of reach).

        With ``members`` > 1 it keeps its share of the fleet's probing: its
        next probe comes one recovery interval per member from now (jittered
        down by up to 20 %), not on its own interval (the others fall back
        too when Redis stalls, and each would probe once per interval).
        """
        if self.state is not _OPEN or not (self.awaiting or self.granted_until > now):
            return
        self.awaiting = False
        self.granted_until = float("-inf")
        self._reopen_at = self.due
        if members > 1:
            self.share_probes(now, members)

    def share_probes(self, now: float, members: int) -> None:
        """Probe (open, on its own clock) no sooner than one recovery interval per member."""
        if self.state is _OPEN and members > 1:
            spread = self.policy.recovery_timeout * members * (1.0 - 0.2 * self._rng.random())
            self._reopen_at = max(self._reopen_at, now + spread)

    def grant(self, now: float, until: float) -> None:
        """This process won the fleet's probe lease: a call before ``until`` may probe."""
        if self.state is _OPEN:
            self.awaiting = False
            self._reopen_at = now
            self.granted_at = now
            self.granted_until = until

    def adopt_open(self, due: float) -> None:
        """Open because the fleet did (the partition guard has agreed); probe from ``due``."""
        if self.state is not _CLOSED:
            return
        self.adopting = True
        try:
            self._open()
        finally:
            self.adopting = False
        self.due = due
        self._reopen_at = due

    def adopt_close(self) -> None:
        """Close because another process's probe succeeded."""
        if self.state is _CLOSED:
            return
        self.adopting = True
        try:
            self._close()
        finally:
            self.adopting = False
        self.awaiting = self.voter = False
        self.granted_until = float("-inf")
