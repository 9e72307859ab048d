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
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from seawall._path.spec import (
    GENERATORS,
    STREAMS,
    CallSpec,
    FirstAttempt,
    Misuse,
    async_kind,
    generator_function,
    safe_name,
)
from seawall._path.threads import SyncRun

if TYPE_CHECKING:
    from seawall.engine import Seawall

__all__ = ["call", "protect", "refuse_async", "refuse_generator", "run"]

P = ParamSpec("P")
T = TypeVar("T")


def run(sw: Seawall, spec: CallSpec, first: FirstAttempt | None = None) -> SyncRun:
    """The attempts of one call in this thread (iterate it: ``with attempt:`` each).

    ``first``: an attempt the adapter already made (its lean path), settled first.
    """
    return SyncRun(sw.path, spec, sw.sleep, first)


def call(
    sw: Seawall,
    spec: CallSpec,
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> T:
    """``fn(*args, **kwargs)`` under protection, in this thread.

    The caller has refused an async function (``refuse_async``). A function
    that returns an awaitable or an async generator all the same (a lambda
    around an async call) is a misuse found during the attempt: the
    attempt gets no verdict (a half-open probe's permit is given back, the
    breaker does not move), as ``sw.call`` counts a function that is not async.
    """
    attempts = run(sw, spec)
    try:
        for attempt in attempts:
            with attempt:  # a Misuse leaves the attempt without a verdict (SyncAttempt)
                value = fn(*args, **kwargs)
                if inspect.isawaitable(value) or inspect.isasyncgen(value):
                    raise _returned_async(fn, value)
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


def _returned_async(fn: object, value: object) -> Misuse:
    """What ``call_sync(fn)`` raises when ``fn(...)`` gave an awaitable (closed if a coroutine)."""
    if inspect.iscoroutine(value):
        value.close()
    label = safe_name(fn)
    kind = type(value).__name__
    if inspect.isasyncgen(value):
        return Misuse(f"sw.call_sync({label}): it returned {kind}: {STREAMS}")
    return Misuse(
        f"sw.call_sync({label}): it returned {kind}, an awaitable; "
        f"use `await sw.call({label}, ...)` for async code"
    )


def protect(fn: Callable[P, T], call_one: Callable[..., T]) -> Callable[P, T]:
    """``fn`` wrapped: each call runs as ``call_one(fn, *args, **kwargs)``."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return call_one(fn, *args, **kwargs)

    return wrapper
