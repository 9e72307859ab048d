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

from seawall._path.spec import CallSpec, FirstAttempt, call_key
from seawall._path.threads import SyncRun

if TYPE_CHECKING:
    from seawall.engine import Seawall

__all__ = ["call", "protect", "run"]

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
    """``fn(*args, **kwargs)`` under protection, in this thread."""
    if inspect.iscoroutinefunction(fn):
        label = call_key(fn)
        msg = (
            f"sw.call_sync({label}): {label} is an async function; "
            f"use `await sw.call({label}, ...)` (or decorate it: @sw.protect works on both)"
        )
        raise TypeError(msg)
    attempts = run(sw, spec)
    for attempt in attempts:
        with attempt:
            attempt.value = fn(*args, **kwargs)
    value: T = attempts.value
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()
        label = call_key(fn)
        msg = (
            f"sw.call_sync({label}): it returned {type(value).__name__}, an awaitable; "
            f"use `await sw.call({label}, ...)` for async code"
        )
        raise TypeError(msg)
    return value


def protect(fn: Callable[P, T], call_one: Callable[..., T]) -> Callable[P, T]:
    """``fn`` wrapped: each call runs as ``call_one(fn, *args, **kwargs)``."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return call_one(fn, *args, **kwargs)

    return wrapper
