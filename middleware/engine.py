"""``Seawall``: per-key state and the attempt loop every adapter shares.

An adapter (the aiohttp middleware, ``Seawall.call``) describes one call in a
``CallSpec`` and hands ``run`` a coroutine function that makes one attempt.
``run`` owns everything else: deadline, cooldown, breaker, classification,
retry decision, backoff, budget, escalation, events and metrics.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import inspect
import logging
import math
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import attrs
from yarl import URL

import seawall.watchdog as _watchdog
from seawall import testing as _testing
from seawall.breaker import CLOSED_PERMIT, Breaker, BreakerState, Permit, Transition
from seawall.budget import RetryBudget
from seawall.context import merge as merge_context
from seawall.cooldown import Cooldown
from seawall.costs import CostTracker
from seawall.deadline import current_deadline
from seawall.errors import (
    CLIENT_TWINS,
    AttemptRecord,
    CircuitOpenError,
    DeadlineExceededError,
    RetriesExhaustedError,
    RetryBudgetExhaustedError,
    SeawallError,
)
from seawall.escalation import EscalationPolicy, Escalator
from seawall.events import (
    AttemptFinished,
    BreakerTransition,
    BudgetExhausted,
    CallFinished,
    Rejected,
    RetryScheduled,
)
from seawall.llm import is_llm_route, rate_info
from seawall.logs import attempts_log, breaker_log, level_for
from seawall.metrics import KeyStats, health_report
from seawall.outcome import SUCCESS, Category, Classification, Outcome, Severity
from seawall.policy import IDEMPOTENT_METHODS, Policy
from seawall.redact import redact_text, redact_url
from seawall.reports import CostReport, HealthReport
from seawall.retry_after import should_retry_header

if TYPE_CHECKING:
    from aiohttp import ClientMiddlewareType, ClientSession

    from seawall.plugins.builtin.exceptions import Pattern
    from seawall.plugins.builtin.patterns import PatternClassifier
    from seawall.plugins.manager import PluginInfo

__all__ = ["Attempt", "BrokenBody", "CallSpec", "FirstAttempt", "KeyState", "Route", "Seawall"]

P = ParamSpec("P")
T = TypeVar("T")

#: Most keys kept; past it, the least recently used are forgotten, whatever their
#: breakers' states, ``MAX_KEYS // 8`` at a time (see ``Seawall._forget_idle``).
MAX_KEYS = 10_000


@attrs.define(slots=True)
class Attempt:
    """What one attempt returned: the value, and for HTTP the response's facts."""

    value: Any
    status: int | None = None
    headers: Mapping[str, str] | None = None
    body: bytes | None = None
    content_type: str = ""


class CallSpec:
    """One call as an adapter describes it to ``Seawall.run``."""

    __slots__ = (
        "_redacted",
        "context",
        "discard",
        "http",
        "idempotent",
        "key",
        "llm",
        "method",
        "policy",
        "replayable",
        "state",
        "url",
    )

    def __init__(
        self,
        *,
        key: str,
        policy: Policy,
        state: KeyState,
        method: str = "CALL",
        url: URL | None = None,
        context: Mapping[str, Any],
        idempotent: bool = True,
        replayable: Callable[[], bool] | None = None,
        discard: Callable[[Any], None] | None = None,
        http: bool = False,
        llm: bool = False,
    ) -> None:
        self.key = key
        self.policy = policy
        self.state = state
        self.method = method
        self.url = url
        self.context = context
        self.idempotent = idempotent
        self.replayable = replayable
        self.discard = discard
        self.http = http
        self.llm = llm  # read rate-limit headers (only LLM APIs send the ones we know)
        self._redacted: URL | None = None

    @property
    def redacted_url(self) -> URL | None:
        if self._redacted is None and self.url is not None:
            self._redacted = redact_url(self.url)
        return self._redacted

    def request_line(self) -> str:
        """``"GET https://host/path?key=***"``, or the key for non-HTTP calls."""
        if self.url is None:
            return f"{self.method} {self.key}"
        return f"{self.method} {self.redacted_url}"


class KeyState:
    """Everything seawall remembers about one key."""

    __slots__ = ("breaker", "budget", "cooldown", "key", "policy", "seen", "stats")

    def __init__(self, key: str, policy: Policy, seawall: Seawall) -> None:
        self.key = key
        #: ``stats.requests`` when the registry last looked: a key used since is recent.
        self.seen = 0
        self.policy = policy
        self.breaker = Breaker(key, policy.breaker, seawall.clock, seawall._on_transition)
        self.budget = RetryBudget(policy.budget, seawall.clock)
        self.cooldown = Cooldown(seawall.clock, policy.retry.retry_after_max)
        self.stats = KeyStats()


class Route:
    """What requests to one origin resolve to, cached per origin.

    ``state`` is filled in by the first request through the aiohttp middleware
    (``None`` until then, and always for routes keyed by the body's model).
    ``fast`` says whether the middleware may make the first attempt itself,
    inline, instead of through ``Seawall.run``: only when nothing on the plain
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


class FirstAttempt:
    """An attempt an adapter already made, for ``Seawall.run(first=...)``.

    The adapter did what ``run`` does before a first attempt (counted the
    request, fed the budget) and sent it at ``started`` under a closed
    breaker with the policy's attempt limit. It did not count the attempt in
    the cooldown's in-flight count: ``run`` does, before settling it.
    ``result``/``exc`` are what the attempt gave (one of them is set).
    """

    __slots__ = ("ended", "exc", "result", "started")

    def __init__(
        self, started: float, ended: float, result: Attempt | None, exc: Exception | None
    ) -> None:
        self.started = started
        self.ended = ended
        self.result = result
        self.exc = exc


class BrokenBody(Exception):
    """Raised by an adapter when a response had a status but reading its body failed.

    ``run`` never re-sends such a request: it raises ``cause`` (with the
    attempt history) and gives the breaker no failure, since the upstream answered.
    """

    def __init__(self, cause: Exception, status: int) -> None:
        super().__init__(cause, status)
        self.cause = cause
        self.status = status


class _Misuse(Exception):
    """Raised by an adapter for a programming error that must not be retried."""


def _is_delay(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


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
    ) -> None:
        from seawall.plugins.manager import Hooks, make_manager

        if policy is None:
            policy = Policy()
        if not isinstance(policy, Policy):
            msg = f"Seawall(policy=...) takes a seawall.Policy, not {policy!r}"
            raise TypeError(msg)
        self.policy = policy
        self._routes = self._check_routes(routes or {})
        self.clock: Callable[[], float] = clock or time.monotonic
        self._states: dict[str, KeyState] = {}
        #: Per origin, by ``origin_key`` (scheme, netloc); cleared (never replaced: the
        #: aiohttp middleware holds it) when plugins change or states are forgotten.
        self._route_cache: dict[tuple[str, str], Route] = {}
        self.plugin_manager = make_manager(
            list(plugins), entrypoints=entrypoints, blocked=list(blocked)
        )
        self.hooks = Hooks(self.plugin_manager)
        self.plugin_manager.listeners.append(self._route_cache.clear)
        self.escalator = Escalator(self.hooks, escalation)
        self.cost_tracker = CostTracker()
        self.started = time.time()
        self._closers: list[Callable[[], Awaitable[Any]]] = []
        for pattern in patterns:
            if isinstance(pattern, tuple):
                self.add_pattern(*pattern)
            else:
                self.add_pattern(pattern.regex, pattern.classification, pattern.exception_types)
        self.hooks.each("seawall_configure", seawall=self)

    # --- construction helpers ---------------------------------------------

    @staticmethod
    def _check_routes(routes: Mapping[str, Policy]) -> dict[str, Policy]:
        checked = {}
        for pattern, route in routes.items():
            if not isinstance(pattern, str) or not pattern:
                msg = f"routes: {pattern!r} is not a host pattern; use e.g. 'api.example.com'"
                raise TypeError(msg)
            if not isinstance(route, Policy):
                msg = f"routes[{pattern!r}] must be a seawall.Policy, not {route!r}"
                raise TypeError(msg)
            checked[pattern.lower()] = route
        return checked

    @classmethod
    def from_config(cls, data: Mapping[str, Any], **kwargs: Any) -> Seawall:
        """Build from ``{"default": {...}, "routes": {...}}`` (see ``seawall.config``)."""
        from seawall.config import load_config

        policy, routes = load_config(data)
        return cls(policy, routes=routes, **kwargs)

    @classmethod
    def from_file(cls, path: str, **kwargs: Any) -> Seawall:
        """Build from a TOML file (see ``seawall.config``)."""
        from seawall.config import load_file

        policy, routes = load_file(path)
        return cls(policy, routes=routes, **kwargs)

    # --- plugins -----------------------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register one more plugin (named after its class unless ``name`` is given)."""
        from seawall.plugins.manager import plugin_name

        self.plugin_manager.register(plugin, name or plugin_name(self.plugin_manager, plugin))

    def list_plugins(self, *, include_builtin: bool = False) -> list[PluginInfo]:
        """The registered plugins and the hooks each implements."""
        return self.plugin_manager.list_plugins(include_builtin=include_builtin)

    def _pattern_classifier(self) -> PatternClassifier:
        plugin = self.plugin_manager.get_plugin("seawall.builtin.patterns")
        if plugin is None:
            msg = (
                "add_pattern needs the built-in plugin 'seawall.builtin.patterns', "
                "which is blocked; unblock it or classify messages in a plugin of your own"
            )
            raise RuntimeError(msg)
        return plugin  # type: ignore[no-any-return]

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
        return self._pattern_classifier().add_pattern(regex, classification, exception_types)

    def classifier_stats(self) -> dict[str, Any]:
        """Counts from the built-in exception classifier and the user's patterns."""
        stats: dict[str, Any] = {}
        for name in ("seawall.builtin.exceptions", "seawall.builtin.patterns"):
            plugin = self.plugin_manager.get_plugin(name)
            if plugin is not None:
                stats.update(plugin.snapshot())
        return stats

    # --- routes and state ---------------------------------------------------

    def resolve(self, url: URL) -> tuple[str, Policy]:
        """The default key and the policy for a request to ``url``."""
        key, policy, _llm = self.route(url)
        return key, policy

    def route(self, url: URL) -> tuple[str, Policy, bool]:
        """``resolve`` plus whether the route is an LLM API."""
        found = self.origin(url)
        return found.key, found.policy, found.llm

    def origin(self, url: URL) -> Route:
        """The ``Route`` for requests to ``url``'s origin; cached per origin."""
        cache_key = origin_key(url)
        found = self._route_cache.get(cache_key)
        if found is None:
            host = (url.host or "").lower()
            policy = self._match(host, url.port) or self.policy
            key = policy.key if policy.key and policy.key != "model" else None
            if key is None:
                key = f"{url.scheme}://{host}:{url.port}"
            llm = is_llm_route(policy, host)
            limit, deadline = policy.timeout.attempt, policy.timeout.deadline
            hooks = self.hooks
            fast = (
                policy.key != "model"
                and not llm
                and not hooks.has("seawall_event")
                and not hooks.custom("seawall_classify")
                and (limit is None or limit >= _watchdog.MIN_LIMIT)
                and (deadline is None or (limit is not None and deadline > limit))
            )
            if len(self._route_cache) >= MAX_KEYS:
                self._route_cache.clear()
            found = self._route_cache[cache_key] = Route(key, policy, llm, fast)
        return found

    def _match(self, host: str, port: int | None) -> Policy | None:
        routes = self._routes
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
        return self._routes.get(key.lower(), self.policy)

    def state_for(self, key: str, policy: Policy) -> KeyState:
        """The state of ``key``, created with ``policy`` on first use."""
        state = self._states.get(key)
        if state is None:
            if len(self._states) >= MAX_KEYS:
                self._forget_idle()
            state = self._states[key] = KeyState(key, policy, self)
        return state

    def _forget_idle(self) -> None:
        """Forget the ``MAX_KEYS // 8`` least recently used keys (second-chance LRU).

        ``_states`` is in insertion order. From the oldest on, a key that
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
        for state in recent:
            states[state.key] = states.pop(state.key)  # to the end: recently used
        self._route_cache.clear()

    # --- the aiohttp and coroutine adapters -----------------------------------

    def middleware(self) -> ClientMiddlewareType:
        """An aiohttp client middleware: ``ClientSession(middlewares=[sw.middleware()])``."""
        from seawall.aiohttp import make_middleware

        return make_middleware(self)

    def session(self, **kwargs: Any) -> ClientSession:
        """A new ``aiohttp.ClientSession`` with this seawall's middleware first."""
        import aiohttp

        middlewares = (self.middleware(), *kwargs.pop("middlewares", ()))
        return aiohttp.ClientSession(middlewares=middlewares, **kwargs)

    async def call(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        key: str | None = None,
        context: Mapping[str, Any] | None = None,
        policy: Policy | None = None,
        **kwargs: Any,
    ) -> T:
        """Run ``await fn(*args, **kwargs)`` under seawall's protection.

        ``key`` names the breaker and budget (default: ``fn``'s qualified name)
        and picks the route policy of that name. When it gives up on an
        exception, the original exception is raised with the attempt history
        in its ``__notes__``.
        """
        key = key or call_key(fn)
        policy = policy or self.policy_for_key(key)
        spec = CallSpec(
            key=key,
            policy=policy,
            state=self.state_for(key, policy),
            context=merge_context(context),
            llm=policy.llm,  # call(policy=Policy.for_llm()) is an LLM call, whatever its key
        )

        async def attempt(_number: int) -> Attempt:
            awaitable = fn(*args, **kwargs)
            if not inspect.isawaitable(awaitable):
                msg = (
                    f"sw.call({fn!r}): it returned {type(awaitable).__name__}, not an "
                    "awaitable; pass an async function (sw.call(fetch, url), not fetch(url))"
                )
                raise _Misuse(msg)
            return Attempt(await awaitable)

        result: T = await self.run(spec, attempt)
        return result

    def protect(
        self,
        *,
        key: str | None = None,
        context: Mapping[str, Any] | None = None,
        policy: Policy | None = None,
    ) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
        """Decorator form of ``call``: ``@sw.protect(key="search")``."""

        def decorate(
            fn: Callable[P, Coroutine[Any, Any, T]],
        ) -> Callable[P, Coroutine[Any, Any, T]]:
            if not inspect.iscoroutinefunction(fn):
                msg = f"@protect needs an async function; {fn!r} is not one"
                raise TypeError(msg)
            name = key or fn.__qualname__

            @functools.wraps(fn)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                return await self.call(
                    fn, *args, key=name, context=context, policy=policy, **kwargs
                )

            return wrapper

        return decorate

    # --- the attempt loop ---------------------------------------------------

    async def run(
        self,
        spec: CallSpec,
        attempt: Callable[[int], Awaitable[Attempt]],
        first: FirstAttempt | None = None,
    ) -> Any:
        """Make attempts until one succeeds or a rule says stop; see DESIGN.md.

        ``first``: the first attempt, when the adapter already made it (the
        aiohttp middleware's lean path); the loop carries on from its result.
        """
        state = spec.state
        policy = spec.policy
        clock = self.clock
        stats = state.stats
        cooldown = state.cooldown
        if first is None:
            started = clock()
            stats.requests += 1
            state.budget.on_request(started)
        else:
            started = first.started
            cooldown.sent()  # the lean path does not count its attempts in flight
        deadline_at = self._deadline_at(policy, started)
        observed = self.hooks.has("seawall_event")
        history: list[AttemptRecord] = []
        retried: dict[Category, int] = {}
        for number in range(1, _testing.cap_attempts(policy.retry.max_attempts) + 1):
            timer: asyncio.Timeout | None = None
            watched = False  # whether the watchdog ended this attempt
            result: Attempt | None
            exc: Exception | None
            if first is not None:
                # Made under the policy's own limit, which the deadline did not cut.
                permit: Permit = CLOSED_PERMIT
                t0, ended, result, exc = first.started, first.ended, first.result, first.exc
                by_deadline, first = False, None
            else:
                if cooldown.until or cooldown.rate is not None:  # no coroutine for an idle key
                    await self._respect_cooldown(spec, deadline_at, history)
                limit, by_deadline = self._attempt_limit(spec, deadline_at, history)
                admitted = state.breaker.admit()
                if admitted is None:
                    self._reject(spec, "breaker", state.breaker.retry_after())
                    raise self._error(
                        spec,
                        CircuitOpenError,
                        None,
                        history,
                        retry_after=state.breaker.retry_after(),
                    )
                permit = admitted
                t0 = clock()
                cooldown.sent()
                # Long limits share a coarse timer (seawall.watchdog); short ones, which
                # need precision, get their own asyncio.timeout.
                task = dog = None
                try:
                    if limit is None:
                        result = await attempt(number)
                    elif limit >= _watchdog.MIN_LIMIT:
                        task = asyncio.current_task()
                        assert task is not None, "seawall calls run inside a task"
                        dog = _watchdog.of(task.get_loop())
                        dog.watch(task, limit)
                        try:
                            result = await attempt(number)
                        finally:
                            dog.done(task)
                    else:
                        timer = asyncio.timeout(limit)
                        async with timer:
                            result = await attempt(number)
                    exc = None
                except _Misuse as misuse:
                    state.breaker.release(permit)
                    cooldown.settle()
                    raise TypeError(str(misuse)) from None
                except Exception as caught:
                    result, exc = None, caught
                except asyncio.CancelledError:
                    if dog is None or task is None or limit is None or not dog.timed_out(task):
                        state.breaker.release(permit)  # cancelled: never retried, never counted
                        cooldown.settle()
                        raise
                    result, exc, watched = None, attempt_timeout(limit), True
                except BaseException:
                    state.breaker.release(permit)
                    cooldown.settle()
                    raise
                ended = clock()
            elapsed = ended - t0
            stats.attempts += 1
            # Cut short by the caller's own deadline (not the policy's attempt limit):
            # says nothing about the upstream, so the breaker gets no verdict.
            cut = by_deadline and (watched or (timer is not None and timer.expired()))
            answered = None
            if isinstance(exc, BrokenBody):
                answered, exc = exc.status, exc.cause
            outcome, classification = self._classify(spec, number, result, exc, elapsed)
            if answered is not None:
                # The upstream answered: a body lost afterwards is not its failure.
                classification = attrs.evolve(
                    classification, retryable=False, counts_as_failure=False
                )
            if cut:
                state.breaker.release(permit)
                cooldown.settle()
            else:
                self._record(spec, permit, classification, result)
            if observed:
                self._emit_attempt(spec, number, result, exc, classification, elapsed)
            if classification.is_success:
                self._finish(spec, ended - started, classification, result, number, None, observed)
                return result.value if result is not None else None
            # Only failures need the history (for notes and errors): the success path skips it.
            history.append(
                AttemptRecord(
                    number, _describe(result, exc), classification.category.value, elapsed
                )
            )
            _log_attempt(spec, history[-1], classification)
            if cut:
                return self._stop(
                    spec, "deadline", started, classification, result, exc, history, cut=True
                )
            if answered is not None:
                why = f"the response had a status (HTTP {answered}); it is never re-sent"
                return self._stop(spec, why, started, classification, result, exc, history)
            if outcome is None:
                outcome = self._outcome(spec, number, result, exc, elapsed)
            stop = self._why_stop(spec, number, outcome, classification, retried)
            if stop is not None:
                return self._stop(spec, stop, started, classification, result, exc, history)
            delay, why = self._delay(spec, number, outcome, classification)
            if delay is None:
                return self._stop(spec, why, started, classification, result, exc, history)
            if deadline_at is not None and clock() + delay >= deadline_at:
                return self._stop(spec, "deadline", started, classification, result, exc, history)
            if not state.budget.try_spend():
                self._reject(spec, "budget", None)
                return self._stop(spec, "budget", started, classification, result, exc, history)
            retried[classification.category] = retried.get(classification.category, 0) + 1
            state.stats.retries += 1
            history[-1] = attrs.evolve(history[-1], delay=delay)
            if observed:
                self._emit(
                    RetryScheduled,
                    spec,
                    method=spec.method,
                    url=str(spec.redacted_url or ""),
                    attempt=number,
                    delay=delay,
                    reason=why,
                    category=classification.category.value,
                )
            if result is not None and spec.discard is not None:
                spec.discard(result.value)
            state.stats.waited += delay
            await _testing.sleep(delay)
        msg = "unreachable: the last attempt always stops"  # pragma: no cover
        raise AssertionError(msg)  # pragma: no cover

    # --- pieces of the loop ---------------------------------------------------

    def _deadline_at(self, policy: Policy, now: float) -> float | None:
        """The absolute deadline on ``self.clock``: the policy's or the inbound one."""
        own = policy.timeout.deadline
        at = None if own is None else now + own
        inbound = current_deadline()
        if inbound is not None:
            # Inbound deadlines are on time.monotonic(); convert to our clock.
            converted = now + (inbound - time.monotonic())
            at = converted if at is None else min(at, converted)
        return at

    async def _respect_cooldown(
        self, spec: CallSpec, deadline_at: float | None, history: list[AttemptRecord]
    ) -> None:
        left = None if deadline_at is None else deadline_at - self.clock()
        wait = spec.state.cooldown.reserve(left)  # a paced turn, not only the shared "until"
        if not wait:
            return
        if left is not None and wait >= left:
            self._reject(spec, "cooldown", wait)
            left = max(0.0, left)
            msg = (
                f"{spec.request_line()}: {spec.key} is rate-limited for {wait:.2f}s more, "
                f"longer than the {left:.2f}s left before the deadline; not sent. "
                "Lengthen the deadline or slow the callers down"
            )
            raise self._error(spec, DeadlineExceededError, None, history, message=msg)
        if self.hooks.has("seawall_event"):
            self._emit(
                RetryScheduled,
                spec,
                method=spec.method,
                url=str(spec.redacted_url or ""),
                attempt=len(history),
                delay=wait,
                reason="cooldown",
                category=Category.RATE_LIMIT.value,
            )
        spec.state.stats.waited += wait
        await _testing.sleep(wait)

    def _attempt_limit(
        self, spec: CallSpec, deadline_at: float | None, history: list[AttemptRecord]
    ) -> tuple[float | None, bool]:
        """Seconds this attempt may take, and whether the deadline is what limits it."""
        limit = spec.policy.timeout.attempt
        if deadline_at is None:
            return limit, False
        left = deadline_at - self.clock()
        if left <= 0:
            self._reject(spec, "deadline", None)
            last = f" after {len(history)} attempt(s)" if history else "; nothing was sent"
            msg = (
                f"{spec.request_line()}: the deadline passed{last}. Give the call "
                "more time (TimeoutPolicy.deadline or the inbound deadline) or make it cheaper"
            )
            raise self._error(spec, DeadlineExceededError, None, history, message=msg)
        if limit is None or left < limit:
            return left, True
        return limit, False

    def _outcome(
        self,
        spec: CallSpec,
        number: int,
        result: Attempt | None,
        exc: BaseException | None,
        elapsed: float,
    ) -> Outcome:
        return Outcome(
            key=spec.key,
            method=spec.method,
            url=spec.redacted_url,
            attempt=number,
            status=result.status if result is not None else None,
            headers=result.headers if result is not None else None,
            body=result.body if result is not None else None,
            exception=exc,
            elapsed=elapsed,
            context=spec.context,
            content_type=result.content_type if result is not None else "",
            llm=spec.llm,
        )

    def _classify(
        self,
        spec: CallSpec,
        number: int,
        result: Attempt | None,
        exc: BaseException | None,
        elapsed: float,
    ) -> tuple[Outcome | None, Classification]:
        """Ask the plugins; on the plain success path skip building an Outcome."""
        hooks = self.hooks
        if (
            exc is None
            and result is not None
            and (result.status is None or result.status < 400)
            and not hooks.custom("seawall_classify")
        ):
            return None, SUCCESS
        outcome = self._outcome(spec, number, result, exc, elapsed)
        return outcome, self.classify(outcome)[0]

    def classify(self, outcome: Outcome) -> tuple[Classification, str | None]:
        """What ``outcome`` means, and which plugin said so (``None``: the fallback)."""
        hooks = self.hooks
        answer, plugin = hooks.first("seawall_classify", outcome=outcome)
        if not isinstance(answer, Classification):
            if answer is not None and plugin is not None:
                bad = TypeError(f"seawall_classify returned {answer!r}, not a Classification")
                hooks.fault(plugin, "seawall_classify", bad)
            answer, plugin = self._fallback(outcome), None
        if not answer.is_success and outcome.context.get("critical"):
            # Any failure of a critical operation needs a human (docs/concepts/classification.md).
            answer = attrs.evolve(
                answer, severity=max(answer.severity, Severity.HIGH), escalate=True
            )
        return answer, plugin

    def _fallback(self, outcome: Outcome) -> Classification:
        """When every classifier deferred or failed: the user's patterns, then the tables.

        The registered instances when they are there (they hold the patterns and
        the cache), else the plain tables.
        """
        from seawall.plugins.builtin.exceptions import classify_exception
        from seawall.plugins.builtin.http import classify_status

        manager = self.plugin_manager
        patterns = manager.get_plugin("seawall.builtin.patterns")
        if patterns is not None:
            found: Classification | None = patterns.match(outcome)
            if found is not None:
                return found
        exc = outcome.exception
        if exc is not None:
            registered = manager.get_plugin("seawall.builtin.exceptions")
            if registered is not None:
                return registered.classify(exc)  # type: ignore[no-any-return]
            return classify_exception(exc)
        if outcome.status is not None:
            return classify_status(outcome.status)
        return SUCCESS

    def _record(
        self, spec: CallSpec, permit: Any, c: Classification, result: Attempt | None = None
    ) -> None:
        state = spec.state
        breaker = state.breaker
        headers = result.headers if spec.llm and result is not None else None
        state.cooldown.observe(rate_info(headers) if headers else None, success=c.is_success)
        if c.is_success:
            breaker.record(permit, failure=False)
            return
        if c.counts_as_failure:
            breaker.record(permit, failure=True)
        elif c.category is Category.CALLER:
            breaker.release(permit)  # the caller's own code failed: no news of the upstream
        elif c.category is Category.RATE_LIMIT:
            breaker.release(permit)  # the upstream is alive but busy: a cooldown, not a trip
            if c.retry_after is not None:
                state.cooldown.start(min(c.retry_after, spec.policy.retry.retry_after_max))
        else:
            breaker.record(permit, failure=False)  # a 4xx: the upstream answered
        if c.escalate or c.severity >= Severity.CRITICAL:
            self.escalator.report(
                severity=c.severity,
                category=c.category,
                key=spec.key,
                request=spec.request_line(),
                reason=redact_text(c.reason),
                context={k: v for k, v in spec.context.items() if isinstance(v, str | int | bool)},
            )

    def _why_stop(
        self,
        spec: CallSpec,
        number: int,
        outcome: Outcome,
        c: Classification,
        retried: dict[Category, int],
    ) -> str | None:
        """Why not to retry, or ``None`` to retry. Each rule is a safety reason."""
        retry = spec.policy.retry
        if not c.retryable:
            return "not retryable"
        if c.category not in retry.retry_on and not (
            outcome.headers and should_retry_header(outcome.headers) is True
        ):
            return f"{c.category.value} is not in retry_on"
        if c.max_retries is not None and retried.get(c.category, 0) >= c.max_retries:
            return f"{c.category.value} is retried at most {c.max_retries} time(s)"
        if not spec.idempotent:
            if spec.method in IDEMPOTENT_METHODS:  # safe to re-send, but the policy says no
                return (
                    f"the policy's retry_methods excludes {spec.method} "
                    "(add it to RetryPolicy.retry_methods to retry it)"
                )
            # Re-sending a POST could charge a card twice: only with an Idempotency-Key.
            return f"{spec.method} is not idempotent (add an Idempotency-Key or retry_methods)"
        if spec.replayable is not None and not spec.replayable():
            return "the request body cannot be sent again (a consumed stream)"
        if number >= _testing.cap_attempts(retry.max_attempts):
            return "attempts"
        if c.retry_after is not None and c.retry_after > retry.retry_after_max:
            return (
                f"the server asked to wait {c.retry_after:.1f}s, above "
                f"retry_after_max={retry.retry_after_max:g}"
            )
        if spec.state.breaker.is_open():
            return "breaker"
        return None

    def _delay(
        self, spec: CallSpec, number: int, outcome: Outcome, c: Classification
    ) -> tuple[float | None, str]:
        """Seconds to wait before the next attempt, and what decided it."""
        retry = spec.policy.retry
        answer, plugin = self.hooks.first(
            "seawall_backoff", attempt=number, outcome=outcome, classification=c, policy=retry
        )
        if not _is_delay(answer):
            if plugin is not None:
                bad = ValueError(f"seawall_backoff returned {answer!r}, not seconds >= 0")
                self.hooks.fault(plugin, "seawall_backoff", bad)
            from seawall.plugins.builtin.backoff import seawall_backoff

            answer = seawall_backoff(number, retry)
        delay = min(float(answer), retry.max_delay)
        why = "backoff"
        failures = spec.context.get("previous_failures", 0)
        failures = (failures if isinstance(failures, int) else 0) + number
        if failures > 2:
            delay = min(delay * 2.0, retry.max_delay)
        if c.retry_after is not None and c.retry_after > delay:
            delay, why = c.retry_after, "retry-after"
        return delay, why

    def _stop(
        self,
        spec: CallSpec,
        reason: str,
        started: float,
        c: Classification,
        result: Attempt | None,
        exc: Exception | None,
        history: list[AttemptRecord],
        *,
        cut: bool = False,
    ) -> Any:
        """Give up: return the last response, or raise for an exception.

        ``cut``: the caller's deadline ended the last attempt; counted apart
        (``cut_by_deadline``), never against the upstream.
        """
        if cut:
            spec.state.stats.cut_by_deadline += 1
        else:
            spec.state.stats.failures[c.category.value] += 1
            if c.counts_as_failure:
                spec.state.breaker.call_failed()
        elapsed = self.clock() - started
        self._finish(
            spec, elapsed, c, result, len(history), reason, self.hooks.has("seawall_event")
        )
        if exc is None:
            return result.value if result is not None else None
        raise self._final_error(spec, reason, exc, history)

    def _final_error(
        self, spec: CallSpec, reason: str, exc: Exception, history: list[AttemptRecord]
    ) -> BaseException:
        if reason == "deadline" and isinstance(exc, TimeoutError):
            msg = (
                f"{spec.request_line()}: the deadline passed during attempt {len(history)}; "
                "give the call more time or make the upstream answer sooner"
            )
            return self._error(spec, DeadlineExceededError, exc, history, message=msg)
        if not spec.http:
            for record in history:
                exc.add_note(f"seawall: {record}")
            exc.add_note(f"seawall: gave up on {spec.key}: {reason}")
            return exc
        kind: type[SeawallError] | None = {
            "attempts": RetriesExhaustedError,
            "budget": RetryBudgetExhaustedError,
            "deadline": DeadlineExceededError,
            "breaker": CircuitOpenError,
        }.get(reason)
        if kind is None:
            import aiohttp

            # aiohttp re-runs the whole middleware chain once on these two (but not on
            # connector errors, which it re-raises at once); wrap them.
            rerun = isinstance(
                exc, aiohttp.ClientOSError | aiohttp.ServerDisconnectedError
            ) and not isinstance(exc, aiohttp.ClientConnectorError)
            if not rerun:
                for record in history:
                    exc.add_note(f"seawall: {record}")
                exc.add_note(f"seawall: not retried: {reason}")
                return exc
            kind = RetriesExhaustedError
        if kind is CircuitOpenError:
            return self._error(
                spec, kind, exc, history, retry_after=spec.state.breaker.retry_after()
            )
        return self._error(spec, kind, exc, history, reason=reason)

    def _error(
        self,
        spec: CallSpec,
        kind: type[SeawallError],
        cause: BaseException | None,
        history: list[AttemptRecord],
        *,
        message: str | None = None,
        retry_after: float | None = None,
        reason: str | None = None,
    ) -> SeawallError:
        """A seawall error for ``spec``; the aiohttp twin when the call is HTTP."""
        cls = CLIENT_TWINS[kind] if spec.http else kind
        if issubclass(cls, CircuitOpenError):
            error: SeawallError = cls(
                spec.key, retry_after or 0.0, attempts=history, message=message
            )
        else:
            if message is None:
                last = redact_text(repr(cause)) if cause is not None else "no attempt"
                if reason not in (None, "attempts"):
                    exhausted = "seawall did not retry it; see the reason and the attempt history"
                elif _unresolved(cause):
                    exhausted = (
                        "the host name did not resolve; check it for typos and check the "
                        "resolver (DNS server, /etc/hosts) - more attempts will not help"
                    )
                else:
                    exhausted = (
                        "the upstream kept failing; check its health or raise "
                        "RetryPolicy.max_attempts"
                    )
                advice = {
                    RetriesExhaustedError: exhausted,
                    RetryBudgetExhaustedError: "too many retries on this key lately, so "
                    "this failure was not retried; the upstream is probably struggling",
                    DeadlineExceededError: "no time was left for another attempt; give "
                    "the call more time or make it cheaper",
                }.get(kind, "see the attempt history in the notes")
                message = (
                    f"{spec.request_line()}: gave up after {len(history)} attempt(s) "
                    f"({reason or kind.__name__}); last: {last}; {advice}"
                )
            error = cls(message, key=spec.key, attempts=history)
        if cause is not None:
            error.__cause__ = cause
        return error

    # --- breaker transitions, events and metrics -------------------------------

    def _on_transition(self, transition: Transition) -> None:
        state = self._states.get(transition.key)
        if state is not None:
            state.stats.transitions[f"{transition.old.value}->{transition.new.value}"] += 1
        level = logging.WARNING if transition.new is BreakerState.OPEN else logging.INFO
        if breaker_log.isEnabledFor(level):
            breaker_log.log(
                level,
                "circuit breaker for %s: %s -> %s (failure rate %.0f%%, %d failed calls in a row)",
                transition.key,
                transition.old.value,
                transition.new.value,
                transition.failure_rate * 100,
                transition.consecutive_failures,
                extra={"seawall_key": transition.key, "seawall_breaker": transition.new.value},
            )
        if self.hooks.has("seawall_event"):
            self.hooks.each(
                "seawall_event",
                event=BreakerTransition(
                    key=transition.key,
                    timestamp=time.time(),
                    old=transition.old.value,
                    new=transition.new.value,
                    failure_rate=transition.failure_rate,
                    consecutive_failures=transition.consecutive_failures,
                ),
            )

    def _reject(self, spec: CallSpec, reason: str, retry_after: float | None) -> None:
        spec.state.stats.rejections[reason] += 1
        if self.hooks.has("seawall_event"):
            self._emit(
                Rejected,
                spec,
                reason=reason,
                retry_after=retry_after,
                method=spec.method,
                url=str(spec.redacted_url or ""),
            )
            if reason == "budget":
                self._emit(BudgetExhausted, spec, balance=spec.state.budget.balance())

    def _finish(
        self,
        spec: CallSpec,
        elapsed: float,
        c: Classification,
        result: Attempt | None,
        attempts: int,
        stopped: str | None,
        observed: bool,
    ) -> None:
        """A call ended after ``elapsed`` seconds: metrics, and the event if observed."""
        spec.state.stats.observe_call(elapsed, c.is_success)
        if observed:
            self._emit(
                CallFinished,
                spec,
                method=spec.method,
                url=str(spec.redacted_url or ""),
                attempts=attempts,
                outcome=c.category.value,
                status=result.status if result is not None else None,
                elapsed=elapsed,
                stopped_because=stopped,
            )

    def _emit_attempt(
        self,
        spec: CallSpec,
        number: int,
        result: Attempt | None,
        exc: BaseException | None,
        c: Classification,
        elapsed: float,
    ) -> None:
        self._emit(
            AttemptFinished,
            spec,
            method=spec.method,
            url=str(spec.redacted_url or ""),
            attempt=number,
            status=result.status if result is not None else None,
            exception=type(exc).__name__ if exc is not None else None,
            category=c.category.value,
            elapsed=elapsed,
        )

    def _emit(self, cls: type[Any], spec: CallSpec, **fields: Any) -> None:
        self.hooks.each("seawall_event", event=cls(key=spec.key, timestamp=time.time(), **fields))

    # --- reports and lifecycle ------------------------------------------------

    def health(self) -> HealthReport:
        """Status by breaker states, with per-key detail (see ``seawall.reports``)."""
        return health_report(self)

    def costs(self) -> CostReport:
        """What LLM calls cost, per key and model, and what failures cost (``seawall.costs``)."""
        from seawall.costs import report

        return report(self)

    def reset_metrics(self) -> None:
        """Zero every key's counters (breaker and budget state are kept)."""
        for state in self._states.values():
            state.stats = KeyStats()

    def on_close(self, callback: Callable[[], Awaitable[Any]]) -> None:
        """Have ``aclose()`` await ``callback()`` after the incidents are delivered.

        For plugins that own resources (a webhook sink's HTTP session).
        """
        self._closers.append(callback)

    async def aclose(self) -> None:
        """Deliver queued incidents (bounded), stop background work, close plugins."""
        await self.escalator.aclose()
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


def origin_key(url: URL) -> tuple[str, str]:
    """What routes are cached by: the scheme and the netloc as written.

    Read from yarl's slots (``_scheme``, ``_netloc``, there since yarl 1.13;
    aiohttp 3.12 needs 1.17): its cached properties cost three times as much,
    on every request. A yarl without them gets the public equivalents, and
    the middleware then resolves each request through ``Seawall.origin``.
    """
    try:
        return url._scheme, url._netloc
    except AttributeError:
        return url.scheme, url.raw_authority


def attempt_timeout(limit: float) -> TimeoutError:
    """What an attempt that ran out of time failed with."""
    return TimeoutError(f"attempt took longer than {limit:.3g}s")


def call_key(fn: object) -> str:
    """The default key of ``sw.call(fn)``: the qualified name of the function underneath.

    Never ``repr(fn)``: a ``functools.partial``'s repr holds its arguments
    (headers, tokens, query strings), and the key is shown in ``health()``,
    metrics labels, logs and events. Partials and bound methods are unwrapped;
    a callable object without ``__qualname__`` is named by its type.
    """
    for _ in range(100):  # bounded: partials of partials, methods of partials
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif inspect.ismethod(fn):
            fn = fn.__func__
        else:
            break
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) and name else type(fn).__qualname__


def _unresolved(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is a failure to resolve a host name."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, socket.gaierror):
            return True
        if isinstance(getattr(exc, "os_error", None), socket.gaierror):
            return True  # aiohttp's ClientConnectorError keeps the OSError aside
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _log_attempt(spec: CallSpec, record: AttemptRecord, c: Classification) -> None:
    """Log a failed attempt on ``seawall.attempts`` at its severity's level, if enabled."""
    level = level_for(c.severity)
    if attempts_log.isEnabledFor(level):
        attempts_log.log(
            level,
            "%s: %s",
            spec.request_line(),
            record,
            extra={
                "seawall_key": spec.key,
                "seawall_attempt": record.number,
                "seawall_category": c.category.value,
                "seawall_severity": c.severity.name,
            },
        )


def _describe(result: Attempt | None, exc: BaseException | None) -> str:
    if exc is not None:
        return redact_text(repr(exc))[:300]
    if result is not None and result.status is not None:
        return f"HTTP {result.status}"
    return "returned"
