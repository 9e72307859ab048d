"""The per-key registry: which route a URL takes, and each key's state, bounded.

``route_for(url)`` resolves an origin once (policy by host pattern, key,
whether it is an LLM route, whether the aiohttp lean path may serve it) and
caches the ``Route``. ``state_for(key, policy)`` hands out the key's state
from the ``StateStore``, keeping at most ``MAX_KEYS`` (second-chance LRU).
``view`` is a read-only mapping of the states, for reports and exporters.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Mapping
from types import MappingProxyType

from yarl import URL

from seawall._checks import show
from seawall.llm import is_llm_route
from seawall.llm.prices import warm_up
from seawall.plugins.hooks import Hooks
from seawall.policy import Policy
from seawall.redact import redact_key
from seawall.state import KeyState, StateStore
from seawall.watchdog import MIN_LIMIT

__all__ = ["MAX_KEYS", "Registry", "Route", "call_cache_key", "check_routes", "origin_key"]

#: Most keys kept; past it, the least recently used are forgotten, whatever their
#: breakers' states, ``MAX_KEYS // 8`` at a time (see ``Registry.forget_idle``).
MAX_KEYS = 10_000


class Route:
    """What requests to one origin resolve to, cached per origin.

    ``state`` is filled in by the first request through the aiohttp middleware
    (``None`` until then, and always for routes keyed by the body's model).
    ``fast`` says whether the middleware may make the first attempt itself,
    inline, instead of through the attempt loop: only when nothing on the plain
    success path needs more than counters (no event observers, no custom
    classifier, not an LLM route) and ``limit``, the attempt's time limit, is
    the policy's own (``None``, or long enough for the shared watchdog, and
    not cut short by the policy's deadline).
    """

    __slots__ = ("fast", "key", "limit", "llm", "policy", "state")

    def __init__(self, key: str, policy: Policy, llm: bool, fast: bool) -> None:
        self.key = key
        self.policy = policy
        self.llm = llm
        self.fast = fast
        self.limit = policy.timeout.attempt
        self.state: KeyState | None = None


def check_routes(routes: Mapping[str, Policy]) -> dict[str, Policy]:
    """``routes`` with lower-cased patterns; a clear error for anything else."""
    checked = {}
    for pattern, route in routes.items():
        if not isinstance(pattern, str) or not pattern:
            msg = f"routes: {show(pattern)} is not a host pattern; use e.g. 'api.example.com'"
            raise TypeError(msg)
        if not isinstance(route, Policy):
            msg = f"routes[{show(pattern)}] must be a seawall.Policy, not {show(route)}"
            raise TypeError(msg)
        checked[pattern.lower()] = route
    return checked


def origin_key(url: URL) -> tuple[str, str]:
    """What routes are cached by: the scheme and the netloc as written.

    Read from yarl's slots (``_scheme``, ``_netloc``, there since yarl 1.13;
    aiohttp 3.12 needs 1.17): its cached properties cost three times as much,
    on every request. A yarl without them gets the public equivalents, and
    the middleware then resolves each request through ``route_for``.
    """
    try:
        return url._scheme, url._netloc
    except AttributeError:
        return url.scheme, url.raw_authority


def call_cache_key(key: str, policy: Policy | None) -> str | tuple[None, str, int]:
    """Where ``call_route`` caches: the key itself, or with a policy ``(None, key, id(policy))``."""
    return key if policy is None else (None, key, id(policy))


class Registry:
    """Routes by origin and states by key, both bounded."""

    def __init__(
        self, policy: Policy, routes: Mapping[str, Policy], store: StateStore, hooks: Hooks
    ) -> None:
        self.policy = policy
        self.routes = check_routes(routes)
        self.store = store
        self.hooks = hooks
        self._states: dict[str, KeyState] = {}
        # Threads (sync calls) and the event loop may both make a key's state:
        # one of them must win, or the loser's counts and breaker are lost.
        self._making = threading.Lock()
        #: Read-only: reports and exporters look, only the registry changes it.
        self.view: Mapping[str, KeyState] = MappingProxyType(self._states)
        #: Per origin, by ``origin_key``; cleared (never replaced: the aiohttp
        #: middleware holds it) when plugins change or states are forgotten.
        #: ``sw.call``'s routes are kept here too (``call_route``).
        self.cache: dict[tuple[str | int | None, ...] | str, Route] = {}

    def route_for(self, url: URL) -> Route:
        """The ``Route`` for requests to ``url``'s origin; cached per origin."""
        cache_key = origin_key(url)
        found = self.cache.get(cache_key)
        if found is None:
            host = (url.host or "").lower()
            policy = self.match(host, url.port) or self.policy
            key = redact_key(policy.key) if policy.key and policy.key != "model" else None
            if key is None:
                key = f"{url.scheme}://{host}:{url.port}"
            llm = is_llm_route(policy, host)
            if llm:
                warm_up()  # the price database, read off the event loop before the answer
            fast = policy.key != "model" and self.fast(policy, llm)
            if len(self.cache) >= MAX_KEYS:
                self.cache.clear()
            found = self.cache[cache_key] = Route(key, policy, llm, fast)
        return found

    def call_route(self, key: str, policy: Policy | None) -> Route:
        """The ``Route`` of ``sw.call`` under ``key`` (as given), with ``policy`` or the key's.

        Cached beside the origins (so cleared with them) under ``call_cache_key``,
        which no origin's ``(scheme, netloc)`` can equal; a hit for another
        policy that got the same ``id`` is made again. The route's key is
        ``key`` redacted, its ``state`` is filled in.
        """
        cache_key = call_cache_key(key, policy)
        found = self.cache.get(cache_key)
        if found is None or (policy is not None and found.policy is not policy):
            if policy is None:
                policy = self.policy_for_key(key)
            shown = redact_key(key)  # shown in health(), metrics, logs: never a secret it holds
            llm = policy.llm  # call(policy=Policy.for_llm()) is an LLM call, whatever its key
            if llm:
                warm_up()
            if len(self.cache) >= MAX_KEYS:
                self.cache.clear()
            found = Route(shown, policy, llm, self.fast(policy, llm))
            # Filled in before the route is shared: a thread may read the cache meanwhile.
            found.state = self.state_for(shown, policy)
            self.cache[cache_key] = found
        return found

    def fast(self, policy: Policy, llm: bool) -> bool:
        """Whether an adapter may make a first attempt itself (see ``Route``)."""
        limit, deadline = policy.timeout.attempt, policy.timeout.deadline
        hooks = self.hooks
        return (
            not llm
            and policy.breaker.mode == "classic"  # adaptive: every attempt asks admit
            and not hooks.has("seawall_event")
            and not hooks.custom("seawall_classify")
            and (limit is None or limit >= MIN_LIMIT)
            and (deadline is None or (limit is not None and deadline > limit))
        )

    def match(self, host: str, port: int | None) -> Policy | None:
        """The route policy for ``host`` (and ``port``): exact names first, then patterns."""
        routes = self.routes
        if not routes:
            return None
        with_port = f"{host}:{port}"
        exact = routes.get(with_port) or routes.get(host)
        if exact is not None:
            return exact
        for pattern, policy in routes.items():
            target = with_port if ":" in pattern else host
            if fnmatch.fnmatchcase(target, pattern):
                return policy
        return None

    def policy_for_key(self, key: str) -> Policy:
        """The route policy named exactly ``key``, else the default (for ``call``)."""
        return self.routes.get(key.lower(), self.policy)

    def state_for(self, key: str, policy: Policy) -> KeyState:
        """The state of ``key``, created with ``policy`` on first use."""
        state = self._states.get(key)
        if state is None:
            with self._making:
                state = self._states.get(key)
                if state is None:
                    if len(self._states) >= MAX_KEYS:
                        self.forget_idle()
                    state = self._states[key] = self.store.new_state(key, policy)
        return state

    def forget_idle(self) -> None:
        """Forget the ``MAX_KEYS // 8`` least recently used keys (second-chance LRU).

        States are kept in insertion order. From the oldest on, a key that
        served requests since the last look gets a second chance (it moves to
        the end); the others are forgotten, whatever their breaker's state.
        Each key looked at is either forgotten or was used in between, so the
        cost per new key is O(1) amortised, however many breakers are open.
        The route cache is cleared once per batch, so that no route keeps
        counting on a forgotten state.
        """
        states = self._states
        wanted = len(states) - (MAX_KEYS - max(1, MAX_KEYS // 8))
        forget: list[str] = []
        recent: list[KeyState] = []
        for key, state in states.items():
            requests = state.stats.requests
            if requests != state.seen:
                state.seen = requests
                recent.append(state)
            else:
                forget.append(key)
                if len(forget) >= wanted:
                    break
        short = wanted - len(forget)
        if short > 0:  # every key was busy: the oldest go all the same
            forget.extend(state.key for state in recent[:short])
            recent = recent[short:]
        for key in forget:
            del states[key]
        self.store.forget(forget)  # (a fleet's store would read them from Redis forever)
        for state in recent:
            states[state.key] = states.pop(state.key)  # to the end: recently used
        self.cache.clear()
