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

import threading
from collections.abc import Callable
from typing import Protocol

from seawall.breaker import Breaker, Transition
from seawall.budget import RetryBudget
from seawall.cooldown import Cooldown
from seawall.policy import Policy
from seawall.stats import KeyStats

__all__ = ["KeyState", "LocalStore", "StateStore"]


#: Keys share this many locks (chosen by the key's hash). Steps under a key's lock
#: never wait, so keys that share a stripe only take turns for microseconds.
LOCK_STRIPES = 256
_LOCKS = tuple(threading.RLock() for _ in range(LOCK_STRIPES))


class KeyState:
    """Everything seawall remembers about one key."""

    __slots__ = ("breaker", "budget", "cooldown", "key", "lock", "policy", "seen", "stats")

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
        #: Taken around every update of the parts above, by the event loop and by
        #: threads (sync calls) alike, so a key's breaker is one breaker whoever
        #: calls. Reentrant: a plugin called under it may call seawall again. One of
        #: ``LOCK_STRIPES`` shared locks, not a lock per key (~110 B of the 2 KiB).
        self.lock = _LOCKS[hash(key) % LOCK_STRIPES]

    @property
    def requests(self) -> int:
        """Calls started on this key since the last ``reset_metrics`` (the breaker's rate)."""
        return self.stats.requests

    def begin(self, now: float) -> None:
        """A call starts on this key at ``now``: count it and feed the retry budget.

        What the attempt loop does first; the lean paths do it when their first
        attempt has ended (a success counts through ``KeyStats.lean_success``).
        """
        self.stats.began()
        self.budget.on_request(now)


class StateStore(Protocol):
    """Makes the state of a key on first use (the registry keeps and forgets them)."""

    @property
    def mode(self) -> str:
        """Where state lives, for ``health()``: ``local``, ``shared`` or ``local-fallback``."""
        ...

    def new_state(self, key: str, policy: Policy) -> KeyState:
        """A fresh state for ``key`` under ``policy``."""
        ...

    def forget(self, keys: list[str]) -> None:
        """The registry forgot ``keys``' states (its idle rule): the store lets them go too."""
        ...


class LocalStore:
    """The default store: every key's state lives in this process."""

    mode = "local"

    def __init__(
        self, clock: Callable[[], float], on_transition: Callable[[Transition], None]
    ) -> None:
        self.clock = clock
        self.on_transition = on_transition

    def new_state(self, key: str, policy: Policy) -> KeyState:
        return KeyState(key, policy, self.clock, self.on_transition)

    def forget(self, keys: list[str]) -> None:
        """Nothing to do: this store keeps no state of its own."""
