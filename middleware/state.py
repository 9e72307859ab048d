"""Per-key state: what seawall remembers about one key, behind a small seam.

``KeyState`` bundles one key's breaker, retry budget, cooldown and counters
(each a mechanism with the clock injected). The request path never builds
one itself: it asks a ``StateStore``. ``LocalStore``, the default, keeps
everything in this process; a store shared by a fleet (issue "Fleets",
``seawall[redis]``) plugs in at the same place, handing out states whose
parts keep the same methods (``Breaker.admit``/``record``, ``RetryBudget``,
``Cooldown``) and keep the success path free of round trips.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from seawall.breaker import Breaker, Transition
from seawall.budget import RetryBudget
from seawall.cooldown import Cooldown
from seawall.policy import Policy
from seawall.stats import KeyStats

__all__ = ["KeyState", "LocalStore", "StateStore"]


class KeyState:
    """Everything seawall remembers about one key."""

    __slots__ = ("breaker", "budget", "cooldown", "key", "policy", "seen", "stats")

    def __init__(
        self,
        key: str,
        policy: Policy,
        clock: Callable[[], float],
        on_transition: Callable[[Transition], None] | None = None,
    ) -> None:
        self.key = key
        #: ``stats.requests`` when the registry last looked: a key used since is recent.
        self.seen = 0
        self.policy = policy
        self.stats = KeyStats()
        # The breaker reads the calls started (``requests``) to size its probes.
        self.breaker = Breaker(key, policy.breaker, clock, on_transition, calls=self)
        self.budget = RetryBudget(policy.budget, clock)
        self.cooldown = Cooldown(clock, policy.retry.retry_after_max)

    @property
    def requests(self) -> int:
        """Calls started on this key since the last ``reset_metrics`` (the breaker's rate)."""
        return self.stats.requests

    def begin(self, now: float) -> None:
        """A call starts on this key at ``now``: count it and feed the retry budget.

        What the attempt loop and the aiohttp lean path both do first.
        """
        self.stats.requests += 1
        self.budget.on_request(now)


class StateStore(Protocol):
    """Makes the state of a key on first use (the registry keeps and forgets them)."""

    def new_state(self, key: str, policy: Policy) -> KeyState:
        """A fresh state for ``key`` under ``policy``."""
        ...


class LocalStore:
    """The default store: every key's state lives in this process."""

    def __init__(
        self, clock: Callable[[], float], on_transition: Callable[[Transition], None]
    ) -> None:
        self.clock = clock
        self.on_transition = on_transition

    def new_state(self, key: str, policy: Policy) -> KeyState:
        return KeyState(key, policy, self.clock, self.on_transition)
