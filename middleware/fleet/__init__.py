"""Fleets: breakers, cooldowns and probes shared by processes through Redis (``seawall[redis]``).

``Seawall(state="redis://host:6379/0")``, ``Seawall(state=redis_client)``, or
``Seawall(state=Fleet(url, prefix="myapp"))`` for the options; ``[state] url``
in a TOML file. ``docs/fleet.md`` says what is shared and how it fails.
``redis`` is imported by ``seawall.fleet.link`` alone, and only when a store
is made.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from seawall.breaker import Transition
from seawall.fleet.link import describe
from seawall.fleet.store import QUORUM, FleetStore

__all__ = ["QUORUM", "Fleet", "FleetStore", "make_store"]


@attrs.frozen
class Fleet:
    """Where the fleet's state lives, and how to reach it.

    :param target: a Redis URL (``redis://[:password@]host:port/db``, ``rediss://``,
        ``unix://``) or a ``redis.asyncio.Redis`` client (Cluster and Sentinel
        clients too: set tight timeouts and no retries on them yourself).
    :param prefix: the start of every Redis key, so several apps share one Redis.
    :param timeout: seconds a round trip may take before the store falls back
        to in-process state (tens of milliseconds).
    :param refresh: seconds between two reads of the fleet's state.
    """

    #: (shown without its password: ``repr`` of a ``Fleet`` lands in logs and tracebacks)
    target: object = attrs.field(repr=lambda target: repr(describe(target)))
    prefix: str = "seawall"
    timeout: float = 0.05
    refresh: float = 0.1


def make_store(
    state: object, clock: Callable[[], float], on_transition: Callable[[Transition], None]
) -> FleetStore:
    """The store for ``Seawall(state=...)``: a URL, a client, or a ``Fleet``."""
    fleet = state if isinstance(state, Fleet) else Fleet(state)
    return FleetStore(
        fleet.target,
        clock,
        on_transition,
        prefix=fleet.prefix,
        timeout=fleet.timeout,
        refresh=fleet.refresh,
    )
