"""The fleet store's outbox: what this process has to publish, batched into one round's writes.

The parts' news (a vote, a close, a probe's send, a 429's wait, a cut or a
bound of the rate, crowded callers asking for an early probe) is posted here
synchronously, with no I/O; the store's next round turns it into Lua calls
(``Outbox.calls``): a key's vote, close, probe or early probe at most once a
round, every wait, and of a round's rates the lowest cut and the lowest bound
per key. The constants below are the fleet's protocol that
the writes carry (``docs/fleet.md``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from seawall.cooldown import LEVEL
from seawall.fleet.parts import FleetBreaker
from seawall.learnt_pace import HOLD
from seawall.state import KeyState

__all__ = [
    "EARLY_BACKOFF_MAX",
    "QUORUM",
    "RATE_CUT_SPACING",
    "RATE_DOUBLING",
    "RATE_PLATEAU",
    "RATE_RISE",
    "RATE_TTL",
    "Call",
    "Outbox",
    "ms",
]

#: One Lua call of a round: the script's name, its Redis keys, its arguments.
Call = tuple[str, list[str], list[Any]]

#: Distinct processes whose votes open the breaker for the whole fleet.
QUORUM = 2

#: After a cut, the fleet's rate (learnt from 429s) rises back in this many seconds to
#: ``RATE_PLATEAU`` of the rate it cut (a stall that bunched sends costs a dip, not 9 s of
#: a slow climb) ...
RATE_RISE = 3.0
RATE_PLATEAU = LEVEL
#: ... holds it until ``scripts.RATE_HOLD_MS`` after a costly cut (its 429 asked for whole
#: seconds), then doubles in this many seconds without a cut (+3 % in 2.6 s) ...
RATE_DOUBLING = 60.0
#: ... is forgotten after this many seconds without a cut ...
RATE_TTL = 10.0
#: ... and is cut at most once in this many seconds for the whole fleet.
RATE_CUT_SPACING = 0.1
#: Seconds at most between an early probe that met the same limit and the next one (1, 4,
#: then this): the in-process cap, ``HOLD`` (docs/architecture.md: a 60 s cap saved nothing
#: measurable on a standing limit, and finds a late lift up to 45 s later).
EARLY_BACKOFF_MAX = HOLD


def ms(seconds: float) -> int:
    """Whole milliseconds for Redis, at least one."""
    return max(1, round(seconds * 1000))


class Outbox:
    """News posted by the fleet's parts, until a round publishes it (see the module)."""

    def __init__(self, node: str, keys: Callable[..., list[str]]) -> None:
        #: This process in the fleet's votes and leases.
        self.node = node
        self._keys = keys
        self._news: deque[tuple[str, str, float]] = deque()

    def post(self, op: str, key: str, value: float = 0.0) -> None:
        self._news.append((op, key, value))

    def clear(self) -> None:
        self._news.clear()

    def calls(self, states: Mapping[str, KeyState], now: float, refresh: float) -> list[Call]:
        """Empty the outbox into one round's writes (keys without a state are dropped)."""
        batch: list[Call] = []
        spacing = ms(max(RATE_CUT_SPACING, 5 * refresh))
        posted = set()
        rates: dict[tuple[str, str], float] = {}  # the lowest of a round's cuts and bounds
        costly: set[str] = set()  # keys with a cut of this round that was costly
        while self._news:
            op, key, value = self._news.popleft()
            state = states.get(key)
            if state is None:
                continue
            if op in ("rate", "bound", "costly"):
                if op == "costly":  # a cut whose 429 paused the fleet for whole seconds
                    op = "rate"
                    costly.add(key)
                rates[op, key] = min(value, rates.get((op, key), value))
                continue
            if (op, key) in posted and op != "cool":
                continue
            posted.add((op, key))
            policy = state.policy.breaker
            recovery = ms(policy.recovery_timeout)
            ttl = max(ms(2 * policy.recovery_timeout), 10_000)
            if op == "vote":
                args: list[Any] = [self.node, ttl, recovery, QUORUM]
                batch.append(("VOTE", self._keys(key, "b", "v"), args))
                breaker = state.breaker
                if isinstance(breaker, FleetBreaker):
                    breaker.voted_at = now
            elif op == "close":
                batch.append(("CLOSE", self._keys(key, "b", "v", "p"), [self.node, ttl]))
            elif op == "probed":
                batch.append(("PROBED", self._keys(key, "p"), [self.node, recovery]))
            elif op == "early":  # before the round's reads: they see the probe it starts
                args = [self.node, 0, ms(RATE_DOUBLING), ms(RATE_TTL), 0, 0, ms(RATE_RISE)]
                batch.append(("EARLY", self._keys(key, "b", "v", "c", "r"), args))
            else:
                batch.append(("COOL", self._keys(key, "c"), [ms(value)]))
        for (op, key), value in rates.items():
            args = [self.node, ms(value), ms(RATE_DOUBLING), ms(RATE_TTL), spacing]
            args += [1 if op == "bound" else 0, ms(RATE_RISE), round(RATE_PLATEAU * 1000)]
            args += [ms(EARLY_BACKOFF_MAX), 1 if op == "rate" and key in costly else 0]
            batch.append(("RATE", self._keys(key, "b", "v", "c", "r"), args))
        return batch
