"""Plain ``def`` functions under seawall: ``sw.call_sync``, ``@sw.protect`` and
``@seawall.retry`` on sync functions, and ``for attempt in sw.attempts(...)``.

The attempts run in the calling thread (``seawall._path.threads``): the same
classification, retries, breaker, budget and deadline as async calls, with
waits slept by the ``Seawall``'s ``sleep`` (``time.sleep`` by default). Key
state is shared with the event loop under each key's lock: a key's breaker
is one breaker whoever calls.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from inspect import CO_ASYNC_GENERATOR, CO_COROUTINE, CO_GENERATOR, CO_ITERABLE_COROUTINE
from types import FunctionType, GeneratorType, MethodType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from seawall._path.replay import replayable_args
from seawall._path.spec import (
    GENERATORS,
    STREAMS,
    CallSpec,
    FirstAttempt,
    Misuse,
    async_kind,
    call_key,
    call_spec,
    generator_function,
    safe_name,
)
from seawall._path.threads import SyncRun
from seawall.breaker import BreakerState
from seawall.deadline import DEADLINE_VAR

if TYPE_CHECKING:
    from seawall.engine import Seawall
    from seawall.policy import Policy

__all__ = [
    "call",
    "call_fn",
    "protect",
    "protect_each",
    "refuse_async",
    "refuse_generator",
    "run",
]

#: The code flags of a function that is not plain: async, an async generator, a generator
#: (``types.coroutine`` adds CO_ITERABLE_COROUTINE to a generator's).
_NOT_PLAIN = CO_COROUTINE | CO_ASYNC_GENERATOR | CO_GENERATOR | CO_ITERABLE_COROUTINE
_CLOSED = BreakerState.CLOSED  # read through the class, a member costs a descriptor call
_inbound_deadline = DEADLINE_VAR.get

#: Types whose values are known to be neither awaitable nor async generators: what
#: ``call_fn`` tells apart from a misuse after each attempt (``inspect.isawaitable``'s
#: ABC check costs ~0.35 µs, a sixth of a lean call). Types, not values: a value's
#: answer is its type's, except a generator's (``types.coroutine`` marks some
#: generators awaitable), which is never remembered. Held strongly (a type is hashed
#: by identity and compared by it, so it cannot be taken for another), bounded:
#: cleared when full.
PLAIN_RESULTS: dict[type, bool] = {}
PLAIN_RESULTS_MAX = 256


def _returns_lazy(value: object) -> bool:
    """Whether ``fn(...)`` gave an awaitable, an async generator or a generator: work that
    runs only after the protected call returned it (a misuse; plain types are remembered)."""
    kind = type(value)
    if kind in PLAIN_RESULTS:
        return False
    if kind is GeneratorType or inspect.isawaitable(value) or inspect.isasyncgen(value):
        return True
    if kind is not GeneratorType and value.__class__ is kind:
        if len(PLAIN_RESULTS) >= PLAIN_RESULTS_MAX:
            PLAIN_RESULTS.clear()
        PLAIN_RESULTS[kind] = True
    return False


P = ParamSpec("P")
T = TypeVar("T")


def run(sw: Seawall, spec: CallSpec, first: FirstAttempt | None = None) -> SyncRun:
    """The attempts of one call in this thread (iterate it: ``with attempt:`` each).

    ``first``: an attempt the adapter already made (its lean path), settled first.
    """
    return SyncRun(sw.path, spec, sw.sleep, first)


def call_fn(
    sw: Seawall,
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    key: str | None = None,
    context: Mapping[str, Any] | None = None,
    policy: Policy | None = None,
    retry_if: Callable[[BaseException], bool] | None = None,
    checked: str | None = None,
) -> T:
    """``fn(*args, **kwargs)`` protected in this thread: ``sw.call_sync``, ``Using.call_sync``,
    ``@sw.protect`` and ``@seawall.retry`` on a ``def``. The options are checked already.

    ``checked``: the decorator that wrapped ``fn`` (``"@sw.protect"``), which the errors
    of a misuse name: ``fn`` is known to be neither async nor a generator function
    (it refused those when it wrapped it). ``None`` (``sw.call_sync``): it is refused
    here (``refuse_async``), a plain function's answer read off its code's flags.

    The lean first attempt, as ``seawall.call_lean.run_call``'s: when the key's
    route allows it (``Route.fast``), the key is idle (breaker closed, no ramp,
    no cooldown) and no inbound deadline is set (the loop checks one before the
    first attempt), ``fn`` is called here with the bookkeeping ``SyncRun`` would
    do for a first-try success (``KeyState.begin`` and ``KeyStats.lean_success``,
    under the key's lock once), and a success returns at once. A failure goes to
    ``SyncRun`` as its ``FirstAttempt``: classified, counted and retried there,
    never made twice. An interrupt (any ``BaseException`` that is not an
    ``Exception``) or a returned awaitable or generator counts the call as started,
    with no verdict, as ``SyncRun`` does.
    """
    if checked is None and (
        type(fn) is not FunctionType or fn.__dict__ or fn.__code__.co_flags & _NOT_PLAIN
    ):
        refuse_async(fn, "sw.call_sync")
    if key is None:
        if type(fn) is FunctionType:
            key = fn.__qualname__ or call_key(fn)
        elif type(fn) is MethodType and type(fn.__func__) is FunctionType:
            key = fn.__func__.__qualname__ or call_key(fn)  # call_key's answer, sooner
        else:
            key = call_key(fn)
    registry = sw.registry
    # Registry.call_route's cache, read here (a call less): see call_cache_key.
    route = registry.cache.get(key if policy is None else (None, key, id(policy)))
    if route is None or (policy is not None and route.policy is not policy):
        route = registry.call_route(key, policy)
    state = route.state
    assert state is not None, "call_route fills in the state"
    if route.fast:
        clock = sw.clock
        started = clock()
        breaker, cooldown = state.breaker, state.cooldown
        if (
            breaker.state is _CLOSED
            and not breaker.ramp_until  # a ramp (even one a stall left behind) queues calls
            and cooldown.rate is None
            and cooldown.until <= started
            and _inbound_deadline() is None  # a deadline: the loop checks it first
        ):
            lock = state.lock  # other threads and the event loop share this key
            # Whether the arguments can be given again is asked of them as they are before
            # the attempt (a file the function closes is no longer "read as used" after it).
            replayable = replayable_args(args, kwargs) if args or kwargs else None
            exc: Exception | None = None
            try:
                value = fn(*args, **kwargs) if kwargs else fn(*args)
            except Exception as caught:
                exc = caught
            except BaseException:
                lock.acquire()
                try:
                    state.begin(started)  # started, then interrupted: no verdict
                finally:
                    lock.release()
                raise
            if exc is None and type(value) not in PLAIN_RESULTS and _returns_lazy(value):
                lock.acquire()
                try:
                    state.begin(started)  # counted as SyncRun counts a misuse
                finally:
                    lock.release()
                raise TypeError(str(_returned_lazy(fn, value, checked or "sw.call_sync")))
            ended = clock()
            lock.acquire()
            try:
                budget = state.budget  # RetryBudget.on_request, written out (a call less)
                if started >= budget.next_at:
                    budget.advance(started)
                budget.pending += 1
                if exc is None:
                    if not breaker.quiet:
                        breaker.succeeded()
                    state.stats.lean_success(ended - started)  # its request, attempt, success
                    result: T = value
                    return result
                state.stats.began()  # the rest of KeyState.begin
            finally:
                lock.release()
            first = FirstAttempt(started, ended, None, exc)
            spec = call_spec(route, context, retry_if, replayable)
            return call(sw, spec, fn, args, kwargs, first, checked or "sw.call_sync")
    spec = call_spec(route, context, retry_if, replayable_args(args, kwargs))
    return call(sw, spec, fn, args, kwargs, None, checked or "sw.call_sync")


def call(
    sw: Seawall,
    spec: CallSpec,
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    first: FirstAttempt | None = None,
    where: str = "sw.call_sync",
) -> T:
    """``fn(*args, **kwargs)`` under protection, in this thread.

    The caller has refused an async function (``refuse_async``). A function
    that returns an awaitable or an async generator all the same (a lambda
    around an async call), or a generator (its code would run as it is
    iterated, after the call returned), is a misuse found during the attempt:
    the attempt gets no verdict (a half-open probe's permit is given back, the
    breaker does not move), as ``sw.call`` counts a function that is not async.
    ``where``: the form the user wrote, for the error.
    """
    attempts = run(sw, spec, first)
    try:
        for attempt in attempts:
            with attempt:  # a Misuse leaves the attempt without a verdict (SyncAttempt)
                value = fn(*args, **kwargs)
                if type(value) not in PLAIN_RESULTS and _returns_lazy(value):
                    raise _returned_lazy(fn, value, where)
                attempt.value = value
    except Misuse as misuse:
        raise TypeError(str(misuse)) from None
    result: T = attempts.value
    return result


def refuse_generator(fn: object, where: str) -> None:
    """Refuse a generator function given to a sync form: nothing in it would be protected."""
    if generator_function(fn):
        label = safe_name(fn)
        msg = f"{where} cannot protect {label}: it is a generator function; {GENERATORS}"
        raise TypeError(msg)


def refuse_async(fn: object, where: str) -> None:
    """Refuse an async function (or async generator function) given to a sync form, and
    a generator function (``refuse_generator``)."""
    kind = async_kind(fn)
    if kind is None:
        refuse_generator(fn, where)
        return
    label = safe_name(fn)
    if kind == "coroutine":
        msg = (
            f"{where}({label}): {label} is an async function; "
            f"use `await sw.call({label}, ...)` (or decorate it: @sw.protect works on both)"
        )
    else:
        msg = f"{where}({label}): {label} is an async generator function: {STREAMS}"
    raise TypeError(msg)


def _returned_lazy(fn: object, value: object, where: str) -> Misuse:
    """What ``where`` (``sw.call_sync``, a decorator) raises when ``fn(...)`` gave an
    awaitable, an async generator or a generator (closed if a coroutine or a generator)."""
    if inspect.iscoroutine(value) or inspect.isgenerator(value):
        value.close()  # never started: closing runs none of its code
    label = safe_name(fn)
    kind = type(value).__name__
    decorated = where.startswith("@")
    head = f"{where} on {label}" if decorated else f"{where}({label})"
    if inspect.isasyncgen(value):
        return Misuse(f"{head}: it returned {kind}: {STREAMS}")
    if inspect.isawaitable(value):
        advice = (
            f"make {label} an `async def` that awaits it ({where} protects an async def on "
            "the event loop)"
            if decorated
            else f"use `await sw.call({label}, ...)` for async code"
        )
        return Misuse(f"{head}: it returned {kind}, an awaitable; {advice}")
    return Misuse(f"{head}: it returned a generator: {GENERATORS}")


def protect(
    fn: Callable[P, T],
    sw: Seawall,
    key: str | None,
    context: Mapping[str, Any] | None,
    policy: Policy | None,
    retry_if: Callable[[BaseException], bool] | None,
) -> Callable[P, T]:
    """``fn`` (checked: neither async nor a generator function) wrapped under fixed options:
    each call runs as ``call_fn``, with the options read once here."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return call_fn(sw, fn, args, kwargs, key, context, policy, retry_if, "@sw.protect")

    return wrapper


def protect_each(fn: Callable[P, T], options: Callable[[], Any]) -> Callable[P, T]:
    """``fn`` (checked) wrapped, with the options a ``Using`` that ``options()`` gives at
    each call (``seawall.retry``: the default ``Seawall`` of the moment)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        u = options()
        return call_fn(
            u._sw, fn, args, kwargs, u._key, u._context, u._policy, u._retry_if, "@seawall.retry"
        )

    return wrapper
