"""``run_call``: one protected call of an async function, its lean first attempt written out.

``sw.call``, ``sw.using(...).call`` and ``@sw.protect`` on an async function
(``seawall.calls``) all run here. When the key's route allows it
(``Route.fast``) and the key is idle (breaker closed, no cooldown, no deadline
shorter than the attempt limit), the first attempt is made here with the
bookkeeping ``Seawall.run`` would do for a first-try success, and a success
returns at once; anything else, and whatever follows a failed first attempt,
goes to ``Seawall.run``. Its own module: the hot path, measured to the
instruction (``benchmarks/instructions.py``), apart from the call forms.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from types import FunctionType, MethodType
from typing import TYPE_CHECKING, Any

from seawall import watchdog
from seawall._path.replay import replayable_args
from seawall._path.spec import (
    FirstAttempt,
    attempt_timeout,
    call_key,
    call_spec,
    coroutine_attempt,
    not_awaitable,
)
from seawall.breaker import BreakerState
from seawall.deadline import DEADLINE_VAR

if TYPE_CHECKING:
    from seawall.engine import Seawall
    from seawall.policy import Policy

__all__ = ["run_call"]

_CLOSED = BreakerState.CLOSED  # read through the class, a member costs a descriptor call


_UNSET: Any = object()  # what fn(...) gave, before it gave anything

# Bound once: a module attribute or a C method looked up per call costs more than the call.
_inbound_deadline = DEADLINE_VAR.get
_current_task = watchdog.current_task
_thread_ident = threading.get_ident
_last_loop = watchdog.LAST
_monotonic = time.monotonic


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
    watchdog, ``Breaker.succeeded``, ``KeyStats.lean_success``), and a success
    returns at once. A failure goes to ``Seawall.run`` as its ``FirstAttempt``:
    classified, counted and retried there, never made twice.
    """
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
        cooldown = state.cooldown
        limit = route.limit
        inbound = _inbound_deadline()
        breaker = state.breaker
        if (
            breaker.state is _CLOSED
            and cooldown.rate is None
            and cooldown.until <= started
            and not breaker.ramp_until  # the ramp after a recovery queues calls
            and (inbound is None or (limit is not None and inbound - _monotonic() > limit))
        ):
            # The bookkeeping of KeyState.begin, Watchdog.watch_at/done and a success,
            # written out: each Python call, and each `with` on the lock (its
            # __enter__ parses arguments), costs more than the work itself here.
            # KeyState.begin(started) is done when the attempt has ended, in the one
            # locked section of a success (or before a failure is handed over, or a
            # cancellation raised): a lock taken once a call, not twice.
            # The aiohttp middleware's lean block is its twin, kept apart on purpose:
            # sharing even the locked section as a function cost +0.9k
            # instructions a call (docs/architecture.md); keep the two in step.
            task = dog = None
            if limit is not None:  # >= watchdog.MIN_LIMIT: Route.fast says so
                # watchdog.running(), written out: the last loop seen is the running one
                # when it is asyncio's own and runs in this thread (no getpid() call).
                # `_thread_id`: asyncio's own attribute (BaseEventLoop: `last[2]`), not in typeshed.
                last = _last_loop[0]
                if (
                    last is not None
                    and last[2]
                    and (loop := last[0]()) is not None
                    and loop._thread_id == _thread_ident()  # type: ignore[attr-defined]
                ):
                    dog = last[1]
                else:
                    loop, dog = watchdog.running()
                task = _current_task(loop)
                assert task is not None, "seawall calls run inside a task"
                if dog.stock and clock is _monotonic:  # its clock is ours: no second reading
                    due = started + limit  # Watchdog.watch_at, written out
                    # `outer` is `due` itself unless an attempt of this task encloses this one.
                    outer = dog.deadlines.setdefault(task, due)
                    if outer is not due or task.cancelling() or due < dog.next_at:
                        # The rare cases, as the watchdog does them: an enclosing attempt watched
                        # already (a protected call inside another), a task being cancelled, a
                        # sweep to move sooner.
                        outer = dog.watch_at(task, due)
                else:
                    due, outer = dog.watch(task, limit)
            # Whether the arguments can be given again is asked of them as they are before
            # the attempt (a file the function closes is no longer "read as used" after it).
            replayable = replayable_args(args, kwargs) if args or kwargs else None
            exc: Exception | None = None
            value: Any = None
            awaitable: Any = _UNSET
            try:
                awaitable = fn(*args, **kwargs) if kwargs else fn(*args)
                value = await awaitable  # not awaitable: a TypeError, told apart below
            except Exception as caught:
                if (
                    type(caught) is TypeError
                    and awaitable is not _UNSET
                    and not inspect.isawaitable(awaitable)
                ):
                    with state.lock:
                        state.begin(started)  # counted as Seawall.run counts a misuse
                    raise TypeError(str(not_awaitable(fn, awaitable))) from None
                exc = caught
            except asyncio.CancelledError:
                if dog is None or task is None or limit is None or not dog.timed_out(task, due):
                    with state.lock:
                        state.begin(started)  # started, then cancelled: never retried
                    raise
                exc = attempt_timeout(limit)
            finally:
                if dog is not None and task is not None:  # Watchdog.done, written out
                    if outer is due:
                        dog.deadlines.pop(task, None)
                        if dog.base:
                            dog.base.pop(task, None)
                    else:  # inside another watched attempt: watch its deadline again
                        dog.done(task, due, outer)
            ended = clock()
            lock = state.lock  # threads (sync calls) may share this key's state
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
                    return value
                state.stats.began()  # the rest of KeyState.begin
            finally:
                lock.release()
            first = FirstAttempt(started, ended, None, exc)
            spec = call_spec(route, context, retry_if, replayable)
            return await sw.run(spec, coroutine_attempt(fn, args, kwargs), first)
    spec = call_spec(route, context, retry_if, replayable_args(args, kwargs))
    return await sw.run(spec, coroutine_attempt(fn, args, kwargs))
