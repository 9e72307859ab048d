"""``Seawall``, the facade: it wires the parts together and delegates to them.

The parts, from the bottom (``docs/architecture.md`` has the map): policies
and values, mechanisms (breaker, budget, cooldown, ...), per-key state
(``seawall.state``), the request path (``seawall._path``: registry, rules,
loop, give-up, observer), the adapters (``seawall.aiohttp``,
``seawall.asgi``). Plugins are reached through ``Hooks`` only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import attrs
from yarl import URL

from seawall import costs as _costs
from seawall import forms as _forms
from seawall._path.loop import Loop, classify
from seawall._path.observer import Observer
from seawall._path.registry import MAX_KEYS, Registry, Route, origin_key
from seawall._path.spec import (
    Attempt,
    BrokenBody,
    CallSpec,
    FirstAttempt,
    attempt_timeout,
    call_key,
)
from seawall._patterns import route_map
from seawall.aiohttp import make_middleware
from seawall.config import load_config, read_file, state_from_config
from seawall.costs import CostTracker
from seawall.escalation import EscalationPolicy, Escalator
from seawall.fleet import Fleet, FleetStore, make_store
from seawall.llm import is_llm_route
from seawall.metrics import health_report
from seawall.outcome import Classification, Outcome
from seawall.plugins.hooks import Hooks
from seawall.plugins.manager import make_manager, plugin_name
from seawall.policy import Policy
from seawall.reports import CostReport, HealthReport
from seawall.state import KeyState, LocalStore, StateStore
from seawall.tables import Pattern

if TYPE_CHECKING:
    from aiohttp import ClientMiddlewareType, ClientSession

    from seawall.plugins.manager import PluginInfo

# Old homes of names now defined lower down, kept importable from here.
__all__ = [
    "MAX_KEYS",
    "Attempt",
    "BrokenBody",
    "CallSpec",
    "FirstAttempt",
    "KeyState",
    "Route",
    "Seawall",
    "attempt_timeout",
    "call_key",
    "origin_key",
]


class Seawall:
    """Resilience for outbound calls: one instance per application.

    :param policy: the default ``Policy`` for every upstream.
    :param routes: policies by host pattern (``"api.example.com"``,
        ``"*.internal.example"``, ``"localhost:8080"``; matched with fnmatch,
        exact names first) and, for ``call()``, by key.
    :param plugins: plugin objects registered on top of built-ins and entry points.
    :param entrypoints: load plugins from the ``seawall`` entry-point group.
    :param patterns: message patterns for ``add_pattern``, as ``Pattern`` objects
        or ``(regex, classification[, exception_types])`` tuples.
    :param blocked: plugin names not to register, e.g. ``"seawall.builtin.logging_sink"``.
    :param escalation: how incidents are folded and delivered.
    :param clock: a monotonic clock in seconds, for tests (default ``time.monotonic``).
    :param sleep: how a sync call (``call_sync``, a decorated ``def``) waits, for
        tests (default ``time.sleep``); give one that moves ``clock``.
    :param state: where per-key state lives: ``None`` (this process), or shared by a
        fleet through Redis: a ``redis://`` URL, a ``redis.asyncio.Redis`` client, or a
        ``seawall.fleet.Fleet`` with options (``docs/fleet.md``; ``seawall[redis]``).
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        routes: Mapping[str, Policy] | None = None,
        plugins: Iterable[object] = (),
        entrypoints: bool = True,
        patterns: Iterable[Pattern | tuple[Any, ...]] = (),
        blocked: Iterable[str] = (),
        escalation: EscalationPolicy | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        state: object = None,
    ) -> None:
        if policy is None:
            policy = Policy()
        if not isinstance(policy, Policy):
            msg = f"Seawall(policy=...) takes a seawall.Policy, not {policy!r}"
            raise TypeError(msg)
        checked_routes = route_map(routes)  # before anything starts: a URL as a route fails here
        self.policy = policy
        self.clock: Callable[[], float] = clock or time.monotonic
        #: How sync calls wait between attempts (the thread sleeps); instant in test mode.
        self.sleep: Callable[[float], None] = sleep or time.sleep
        self.plugin_manager = make_manager(
            list(plugins), entrypoints=entrypoints, blocked=list(blocked)
        )
        self.hooks = Hooks(self.plugin_manager)
        self.escalator = Escalator(self.hooks, escalation)
        # The store's breakers report transitions to the observer, which needs
        # the registry's view of the states: tie the knot through ``_transition``.
        store: StateStore = (
            LocalStore(self.clock, self._transition)
            if state is None
            else make_store(state, self.clock, self._transition)
        )
        self.store = store
        #: Internal: routes and per-key state (the adapters read it).
        self.registry = Registry(policy, checked_routes, store, self.hooks)
        self._observer = Observer(self.hooks, self.escalator, self.registry.view)
        #: Internal: the attempt loop (the CLI's ``classify`` asks its ``delay``).
        self.path = Loop(self.clock, self.hooks, self._observer)
        self.plugin_manager.listeners.append(self.registry.cache.clear)
        self.cost_tracker = CostTracker()
        self.started = time.time()
        self._closers: list[Callable[[], Awaitable[Any]]] = []
        if isinstance(store, FleetStore):
            self._closers.append(store.aclose)
            store.cost_source = lambda: _costs.report(self.registry.view, self.cost_tracker)
        for pattern in patterns:
            if isinstance(pattern, tuple):
                self.add_pattern(*pattern)
            else:
                self.add_pattern(pattern.regex, pattern.classification, pattern.exception_types)
        self.hooks.each("seawall_configure", seawall=self)

    @classmethod
    def from_config(cls, data: Mapping[str, Any], **kwargs: Any) -> Seawall:
        """Build from ``{"default": {...}, "routes": {...}}`` (see ``seawall.config``)."""
        policy, routes = load_config(data)
        options = state_from_config(data)
        if options is not None and "state" not in kwargs:
            kwargs["state"] = Fleet(**options)
        return cls(policy, routes=routes, **kwargs)

    @classmethod
    def from_file(cls, path: str, **kwargs: Any) -> Seawall:
        """Build from a TOML file (see ``seawall.config``)."""
        data = read_file(path)
        policy, routes = load_config(data, source=str(path))
        options = state_from_config(data)
        if options is not None and "state" not in kwargs:
            kwargs["state"] = Fleet(**options)
        return cls(policy, routes=routes, **kwargs)

    # --- plugins -----------------------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register one more plugin (named after its class unless ``name`` is given)."""
        self.plugin_manager.register(plugin, name or plugin_name(self.plugin_manager, plugin))

    def list_plugins(self, *, include_builtin: bool = False) -> list[PluginInfo]:
        """The registered plugins and the hooks each implements."""
        return self.plugin_manager.list_plugins(include_builtin=include_builtin)

    def add_pattern(
        self,
        regex: Any,
        classification: Classification,
        exception_types: Iterable[type[BaseException]] = (),
    ) -> Pattern:
        """Classify errors whose message matches ``regex`` as ``classification``.

        User patterns are tried before every built-in classifier (exception
        types, HTTP statuses, LLM error codes), the newest first. An error
        response is matched as ``"HTTP <status>\\n<body>"`` (see
        ``seawall.plugins.builtin.patterns``).
        """
        if not isinstance(classification, Classification):
            msg = (
                "add_pattern: classification must be a seawall.Classification, "
                f"not {classification!r}"
            )
            raise TypeError(msg)
        return self.plugin_manager.patterns().add_pattern(regex, classification, exception_types)

    def classifier_stats(self) -> dict[str, Any]:
        """Counts from the built-in exception classifier and the user's patterns."""
        return self.plugin_manager.classifier_stats()

    # --- routes and state ---------------------------------------------------

    @property
    def _states(self) -> Mapping[str, KeyState]:
        """Every key's state, read-only (``registry.view``)."""
        return self.registry.view

    def resolve(self, url: URL) -> tuple[str, Policy]:
        """The default key and the policy for a request to ``url``."""
        found = self.registry.route_for(url)
        return found.key, found.policy

    def route(self, url: URL) -> tuple[str, Policy, bool]:
        """``resolve`` plus whether the route is an LLM API."""
        found = self.registry.route_for(url)
        return found.key, found.policy, found.llm

    def origin(self, url: URL) -> Route:
        """The ``Route`` for requests to ``url``'s origin; cached per origin."""
        return self.registry.route_for(url)

    def policy_for_key(self, key: str) -> Policy:
        """The route policy named exactly ``key``, else the default (for ``call``)."""
        return self.registry.policy_for_key(key)

    def state_for(self, key: str, policy: Policy) -> KeyState:
        """The state of ``key``, created with ``policy`` on first use."""
        return self.registry.state_for(key, policy)

    def _transition(self, transition: Any) -> None:
        self._observer.transition(transition)

    # --- adapters -----------------------------------------------------------

    def middleware(self) -> ClientMiddlewareType:
        """An aiohttp client middleware: ``ClientSession(middlewares=[sw.middleware()])``."""
        return make_middleware(self)

    def session(self, **kwargs: Any) -> ClientSession:
        """A new ``aiohttp.ClientSession`` with this seawall's middleware first."""
        middlewares = (self.middleware(), *kwargs.pop("middlewares", ()))
        return aiohttp.ClientSession(middlewares=middlewares, **kwargs)

    # --- the call forms and the httpx transports (seawall.forms) ------------------

    call = _forms.call
    call_sync = _forms.call_sync
    using = _forms.using
    attempts = _forms.attempts
    breaker = _forms.breaker
    #: Decorator form of ``call``: ``@sw.protect`` or ``@sw.protect(key="search")``
    #: (``seawall.calls.protect``); every argument of the decorated function reaches it.
    protect = _forms.protect
    httpx_transport = _forms.httpx_transport

    def run(
        self,
        spec: CallSpec,
        attempt: Callable[[int], Awaitable[Attempt]],
        first: FirstAttempt | None = None,
    ) -> Coroutine[Any, Any, Any]:
        """Make attempts until one succeeds or a rule says stop (``seawall._path.loop``).

        Returns the loop's coroutine to await (not a coroutine of its own: a frame less).
        """
        return self.path.run(spec, attempt, first)

    def classify(self, outcome: Outcome) -> tuple[Classification, str | None]:
        """What ``outcome`` means, and which plugin said so (``None``: the fallback)."""
        if not outcome.llm and self._is_llm(outcome):
            outcome = attrs.evolve(outcome, llm=True)  # built by hand: say what its route is
        return classify(self.hooks, outcome)

    def _is_llm(self, outcome: Outcome) -> bool:
        url = outcome.url
        if url is not None:
            return is_llm_route(self.registry.route_for(url).policy, url.host)
        return self.registry.policy_for_key(outcome.key).llm

    # --- reports and lifecycle ------------------------------------------------

    def health(self) -> HealthReport:
        """Status by breaker states, with per-key detail (see ``seawall.reports``)."""
        return health_report(
            self.registry.view,
            started=self.started,
            faults=self.hooks.faults,
            escalation=self.escalator.stats,
            clock=self.clock,
            state=self.store.mode,
        )

    def costs(self, scope: str = "process") -> CostReport:
        """What LLM calls cost, per key and model, and what failures cost (``seawall.costs``).

        ``scope="fleet"`` (with ``state="redis://..."``) adds up every process's
        report: this one's now, the others' as published (every second).
        """
        local = _costs.report(self.registry.view, self.cost_tracker)
        if scope == "process":
            return local
        if scope != "fleet":
            msg = f"sw.costs(scope={scope!r}): give 'process' (the default) or 'fleet'"
            raise ValueError(msg)
        if not isinstance(self.store, FleetStore):
            msg = "sw.costs(scope='fleet') needs Seawall(state='redis://...'); this one is local"
            raise ValueError(msg)
        return self.store.costs(local)

    def reset_metrics(self) -> None:
        """Zero every counter; breaker, budget and cooldown state are kept.

        Each key's counters, latency and last failure time, the classifiers'
        counts, escalation and plugin-fault (and slow-call) counts, cost totals, and uptime.
        """
        for state in self.registry.view.values():
            state.stats = state.stats.fresh()
        self.plugin_manager.reset_classifier_stats()
        escalation = self.escalator.stats
        escalation.update(dict.fromkeys(escalation, 0))
        self.hooks.faults.clear()
        self.hooks.slow.clear()
        self.cost_tracker.reset()
        self.started = time.time()

    def on_close(self, callback: Callable[[], Awaitable[Any]]) -> None:
        """Have ``aclose()`` await ``callback()`` after the incidents are delivered.

        For plugins that own resources (a webhook sink's HTTP session).
        """
        self._closers.append(callback)

    async def aclose(self) -> None:
        """Deliver queued incidents (bounded), stop background work, close plugins.

        Cancelled while incidents are delivered (a shutdown's own timeout), it
        still closes what it opened (the fleet's client, ``on_close`` callbacks),
        then lets the cancellation go on.
        """
        try:
            await self.escalator.aclose(stop_own=False)
        finally:
            try:
                await self._run_closers()
            finally:
                self.escalator.stop_own()  # after the plugins: a sink may close things on it

    async def _run_closers(self) -> None:
        closers, self._closers = self._closers, []
        for close in closers:
            try:
                await close()
            except Exception:
                logging.getLogger("seawall").exception("seawall: %r failed on aclose", close)

    async def __aenter__(self) -> Seawall:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
