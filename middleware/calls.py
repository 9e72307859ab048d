"""Calls of plain async functions: ``sw.call``, ``sw.using(...)``, ``@sw.protect``.

The adapter for code that is not an HTTP request. Seawall's own options
(``key``, ``context``, ``policy``, ``on``) are kept apart from the wrapped
function's arguments: ``sw.using(...)`` takes them before the function, so
every keyword given to ``.call`` reaches the function. ``sw.call(fn, key=...)``
still works where ``fn`` has no parameter of that name; where it has one, it
raises a ``TypeError`` that says to use ``sw.using``.

Every call goes through ``run_call``. Like the aiohttp middleware, it makes
the first attempt itself when the key is idle (breaker closed, no cooldown,
no event observer or custom classifier, no deadline shorter than the
attempt limit) and returns a success at once; anything else, and whatever
follows a failed first attempt, goes to ``Seawall.run``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from types import CoroutineType, FunctionType
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, cast, overload

from seawall import sync, watchdog
from seawall._path.spec import (
    CallSpec,
    FirstAttempt,
    Misuse,
    attempt_timeout,
    call_key,
    coroutine_attempt,
    not_awaitable,
)
from seawall.breaker import BreakerState
from seawall.context import merge as merge_context
from seawall.deadline import DEADLINE_VAR
from seawall.policy import Policy

if TYPE_CHECKING:
    from seawall.engine import Seawall

__all__ = [
    "OPTION_NAMES",
    "Decorator",
    "Retried",
    "Using",
    "check_collisions",
    "check_options",
    "protect",
    "protect_with",
    "retry_predicate",
    "run_call",
]

P = ParamSpec("P")
T = TypeVar("T")

#: Seawall's keyword options of ``sw.call``, which a wrapped function may also take.
OPTION_NAMES = ("key", "context", "policy")

#: What ``on=`` accepts: exception types, or a predicate over the exception.
Retried = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]


class Decorator(Protocol):
    """What ``@sw.protect(...)`` and ``@seawall.retry(...)`` return: keeps the signature
    of an async function or of a plain one."""

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]: ...


def retry_predicate(on: Retried | None, where: str) -> Callable[[BaseException], bool] | None:
    """``on=`` as a predicate; a clear ``TypeError`` for anything else."""
    if on is None:
        return None
    if isinstance(on, type) and issubclass(on, BaseException):
        kind: type[BaseException] = on
        return lambda exc: isinstance(exc, kind)
    if (
        isinstance(on, tuple)
        and on
        and all(isinstance(t, type) and issubclass(t, BaseException) for t in on)
    ):
        kinds = on
        return lambda exc: isinstance(exc, kinds)
    if callable(on) and not isinstance(on, type | tuple):
        return on
    msg = (
        f"{where}(on={on!r}): give an exception type, a non-empty tuple of them, or a "
        "function that takes the exception and returns True to retry it"
    )
    raise TypeError(msg)


def check_options(where: str, key: object, policy: object, *, key_required: bool = False) -> None:
    """Refuse a ``key`` that is not a string (or missing, when required) and a ``policy``
    that is not a ``Policy``, naming ``where`` they were given."""
    if (key is not None or key_required) and not isinstance(key, str):
        msg = f"{where}(key={key!r}): give the key as a string"
        raise TypeError(msg)
    if policy is not None and not isinstance(policy, Policy):
        msg = f"{where}(policy={policy!r}): give a seawall.Policy"
        raise TypeError(msg)


@functools.lru_cache(maxsize=1024)
def _parameters(fn: Callable[..., Any]) -> Mapping[str, int | None]:
    """``fn``'s parameters that a keyword can fill: name -> position (``None``: keyword-only)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins and odd callables: nothing to collide with
        return {}
    found: dict[str, int | None] = {}
    for index, p in enumerate(params):
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            found[p.name] = index
        elif p.kind is inspect.Parameter.KEYWORD_ONLY:
            found[p.name] = None
    return found


def check_collisions(fn: Callable[..., Any], n_args: int, given: Mapping[str, object]) -> None:
    """Refuse ``sw.call(fn, key=...)`` when ``fn`` has its own ``key`` parameter.

    Only options actually given are checked, so a plain ``sw.call(fn, x)``
    never inspects ``fn``. A parameter the ``n_args`` positional arguments
    already fill does not collide (``sw.call(get, "user:1", key="cache")``).
    """
    names = [name for name, value in given.items() if value is not None]
    if not names:
        return
    target: Any = fn
    if inspect.ismethod(fn):  # cache the function, not each bound method (it holds its object)
        target, n_args = fn.__func__, n_args + 1
    try:
        own = _parameters(target)
    except TypeError:  # unhashable callable
        own = _parameters.__wrapped__(target)
    clash = []
    for name in names:
        if name in own:
            position = own[name]
            if position is None or position >= n_args:
                clash.append(name)
    if not clash:
        return
    label = call_key(fn)
    shown = ", ".join(f"{name}=" for name in clash)
    msg = (
        f"sw.call({label}, {shown}...): {label} takes {shown} itself, so it is not clear "
        "whether it is for seawall or for the function. Give seawall's options first and "
        f"every keyword goes to the function: await sw.using({clash[0]}=...).call({label}, "
        f"..., {clash[0]}=...)  (or decorate it with @sw.protect(...))"
    )
    raise TypeError(msg)


class Using:
    """Seawall's options for calls, given apart from the function's arguments.

    ``await sw.using(key="cache").call(cache_get, key="user:1")``: ``key="user:1"``
    reaches ``cache_get``; the call is protected under the key ``"cache"``.
    ``on=`` narrows retries to the given exception types (or to the exceptions
    a predicate returns True for); other exceptions are raised at once.
    """

    __slots__ = ("_context", "_key", "_policy", "_retry_if", "_sw")

    def __init__(
        self,
        sw: Seawall,
        *,
        key: str | None = None,
        context: Mapping[str, Any] | None = None,
        policy: Policy | None = None,
        on: Retried | None = None,
    ) -> None:
        check_options("sw.using", key, policy)
        self._sw = sw
        self._key = key
        self._context = context
        self._policy = policy
        self._retry_if = retry_predicate(on, "sw.using")

    def call(
        self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any
    ) -> Coroutine[Any, Any, T]:
        """``await fn(*args, **kwargs)`` under protection; every keyword goes to ``fn``."""
        # Not a coroutine of its own: run_call's is awaited directly (one frame less).
        return run_call(
            self._sw, fn, args, kwargs, self._key, self._context, self._policy, self._retry_if
        )

    def call_sync(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` under protection in this thread; every keyword goes to ``fn``.

        Waits between attempts sleep the thread (``seawall.sync``).
        """
        key = self._key if self._key is not None else call_key(fn)
        route = self._sw.registry.call_route(key, self._policy)
        assert route.state is not None, "call_route fills in the state"
        spec = CallSpec(
            key=route.key,
            policy=route.policy,
            state=route.state,
            context=merge_context(self._context),
            llm=route.llm,
            retry_if=self._retry_if,
        )
        return sync.call(self._sw, spec, fn, args, kwargs)

    @overload
    def protect(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def protect(self, fn: Callable[P, T], /) -> Callable[P, T]: ...

    def protect(self, fn: Callable[P, Any], /) -> Callable[P, Any]:
        """``fn`` wrapped: each call runs as ``self.call(fn, ...)`` (a ``def``: ``call_sync``)."""
        return protect_with(fn, lambda: self)


def protect_with(fn: Callable[P, Any], using: Callable[[], Using]) -> Callable[P, Any]:
    """``fn`` wrapped, each call run as ``using().call(fn, ...)``: every argument reaches it.

    An ``async def`` is awaited on the event loop (its calls take ``run_call``'s
    lean first attempt); a plain ``def`` runs in the calling thread
    (``using().call_sync``), sleeping it between attempts.
    """
    if not callable(fn):
        msg = f"seawall's decorators wrap a function; {fn!r} is not callable"
        raise TypeError(msg)
    if not inspect.iscoroutinefunction(fn):
        return sync.protect(fn, lambda f, *a, **kw: using().call_sync(f, *a, **kw))
    return _wrap_async(fn, using)


def _wrap_async(
    fn: Callable[P, Coroutine[Any, Any, T]], using: Callable[[], Using]
) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        u = using()
        result: T = await run_call(
            u._sw, fn, args, kwargs, u._key, u._context, u._policy, u._retry_if
        )
        return result

    return wrapper


# --- @sw.protect (Seawall.protect is this function) ------------------------------


@overload
def protect(
    sw: Seawall, fn: Callable[P, Coroutine[Any, Any, T]], /
) -> Callable[P, Coroutine[Any, Any, T]]: ...


@overload
def protect(sw: Seawall, fn: Callable[P, T], /) -> Callable[P, T]: ...


@overload
def protect(
    sw: Seawall,
    fn: None = None,
    /,
    *,
    key: str | None = None,
    context: Mapping[str, Any] | None = None,
    policy: Policy | None = None,
    on: Retried | None = None,
) -> Decorator: ...


def protect(
    sw: Seawall,
    fn: Callable[P, Any] | None = None,
    /,
    *,
    key: str | None = None,
    context: Mapping[str, Any] | None = None,
    policy: Policy | None = None,
    on: Retried | None = None,
) -> Callable[P, Any] | Decorator:
    """Decorator form of ``call``: ``@sw.protect`` or ``@sw.protect(key="search")``.

    Works on ``async def`` and plain ``def`` functions (the latter run as
    ``call_sync``). Every argument of the decorated function reaches it,
    ``key=`` included.
    """
    if fn is not None:
        return Using(sw).protect(fn)
    using = Using(sw, key=key, context=context, policy=policy, on=on)

    def decorate(fn: Callable[P, Any]) -> Callable[P, Any]:
        return using.protect(fn)

    return cast(Decorator, decorate)


# --- one call ---------------------------------------------------------------------

_CLOSED = BreakerState.CLOSED  # read through the class, a member costs a descriptor call


_watching: tuple[weakref.ref[asyncio.AbstractEventLoop], watchdog.Watchdog] | None = None


async def run_call(
    sw: Seawall,
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    key: str | None = None,
    context: Mapping[str, Any] | None = None,
    policy: Policy | None = None,
    retry_if: Callable[[BaseException], bool] | None = None,
) -> Any:
    """``await fn(*args, **kwargs)`` protected: ``sw.call``, ``sw.using().call``, ``@sw.protect``.

    The lean first attempt: when the key's route allows it (``Route.fast``)
    and the key is idle, the attempt is made here with the bookkeeping
    ``Seawall.run`` would do for a first-try success (``KeyState.begin``, the
    watchdog, ``Breaker.succeeded``, ``KeyStats.first_try``), and a success
    returns at once. A failure goes to ``Seawall.run`` as its ``FirstAttempt``:
    classified, counted and retried there, never made twice.
    """
    global _watching
    if key is None:
        key = (fn.__qualname__ or call_key(fn)) if type(fn) is FunctionType else call_key(fn)
    registry = sw.registry
    # Registry.call_route's cache, read here (a call less): see call_cache_key.
    route = registry.cache.get(key if policy is None else (None, key, id(policy)))
    if route is None or (policy is not None and route.policy is not policy):
        route = registry.call_route(key, policy)
    state = route.state
    assert state is not None, "call_route fills in the state"
    first = None
    if route.fast:
        clock = sw.clock
        started = clock()
        cooldown = state.cooldown
        limit = route.limit
        inbound = DEADLINE_VAR.get()
        if (
            state.breaker.state is _CLOSED
            and cooldown.rate is None
            and cooldown.until <= started
            and not state.breaker.ramp_until  # the ramp after a recovery queues calls
            and (inbound is None or (limit is not None and inbound - time.monotonic() > limit))
        ):
            lock = state.lock  # threads (sync calls) may share this key's state
            with lock:
                state.begin(started)
            task = dog = None
            if limit is not None:  # >= watchdog.MIN_LIMIT: Route.fast says so
                loop = asyncio.get_running_loop()
                task = watchdog.current_task(loop)
                assert task is not None, "seawall calls run inside a task"
                watching = _watching  # the last loop's watchdog (watchdog.of, inlined)
                if watching is not None and watching[0]() is loop:
                    dog = watching[1]
                else:
                    dog = watchdog.of(loop)
                    _watching = (weakref.ref(loop), dog)
                if dog.stock and clock is time.monotonic:  # its clock is ours: no second reading
                    dog.watch_at(task, started + limit)
                else:
                    dog.watch(task, limit)
            exc: Exception | None = None
            value: Any = None
            try:
                awaitable = fn(*args, **kwargs)
                if type(awaitable) is not CoroutineType and not inspect.isawaitable(awaitable):
                    raise not_awaitable(fn, awaitable)
                value = await awaitable
            except Misuse as misuse:
                raise TypeError(str(misuse)) from None
            except Exception as caught:
                exc = caught
            except asyncio.CancelledError:
                if dog is None or task is None or limit is None or not dog.timed_out(task):
                    raise  # cancelled: never retried, never counted
                exc = attempt_timeout(limit)
            finally:
                if dog is not None and task is not None:
                    dog.done(task)
            ended = clock()
            if exc is None:
                breaker = state.breaker
                with lock:
                    if not breaker.quiet:
                        breaker.succeeded()
                    state.stats.first_try(ended - started)
                return value
            first = FirstAttempt(started, ended, None, exc)
    spec = CallSpec(
        key=route.key,
        policy=route.policy,
        state=state,
        context=merge_context(context),
        llm=route.llm,
        retry_if=retry_if,
    )
    return await sw.run(spec, coroutine_attempt(fn, args, kwargs), first)
