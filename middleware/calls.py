"""Calls of plain async functions: ``sw.call``, ``sw.using(...)``, ``@sw.protect``.

The adapter for code that is not an HTTP request. Seawall's own options
(``key``, ``context``, ``policy``, ``on``) are kept apart from the wrapped
function's arguments: ``sw.using(...)`` takes them before the function, so
every keyword given to ``.call`` reaches the function. ``sw.call(fn, key=...)``
still works where ``fn`` has no parameter of that name; where it has one, it
raises a ``TypeError`` that says to use ``sw.using``.

Every call goes through ``run_call`` (``seawall.call_lean``). Like the aiohttp
middleware, it makes the first attempt itself when the key is idle (breaker closed, no cooldown,
no event observer or custom classifier, no deadline shorter than the
attempt limit) and returns a success at once; anything else, and whatever
follows a failed first attempt, goes to ``Seawall.run``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, cast, overload

from seawall import sync
from seawall._path.spec import (
    STREAMS,
    async_kind,
    safe_name,
)
from seawall.call_lean import run_call
from seawall.call_options import (
    OPTION_NAMES,
    Retried,
    check_call,
    check_collisions,
    check_options,
    retry_predicate,
)
from seawall.policy import Policy

if TYPE_CHECKING:
    from seawall.engine import Seawall

# The option checks live in seawall.call_options; kept importable from here.
__all__ = [
    "OPTION_NAMES",
    "Decorator",
    "Retried",
    "Using",
    "check_call",
    "check_collisions",
    "check_options",
    "protect",
    "protect_with",
    "retry_predicate",
    "run_call",
]

P = ParamSpec("P")
T = TypeVar("T")


class Decorator(Protocol):
    """What ``@sw.protect(...)`` and ``@seawall.retry(...)`` return: keeps the signature
    of an async function or of a plain one."""

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]: ...


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
        check_options("sw.using", key, policy, context=context)
        self._sw = sw
        self._key = key
        self._context = context
        self._policy = policy
        self._retry_if = retry_predicate(on, "sw.using")

    @classmethod
    def checked(
        cls,
        sw: Seawall,
        key: str | None,
        context: Mapping[str, Any] | None,
        policy: Policy | None,
        retry_if: Callable[[BaseException], bool] | None,
    ) -> Using:
        """A ``Using`` of options its caller has checked already (``seawall.retry`` checks
        its own when it decorates, and makes one per call): without checking them again."""
        using = cls.__new__(cls)
        using._sw, using._key, using._context = sw, key, context
        using._policy, using._retry_if = policy, retry_if
        return using

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

        Waits between attempts sleep the thread (``seawall.sync``). An async
        function is refused before any state is made for it.
        """
        return sync.call_fn(
            self._sw, fn, args, kwargs, self._key, self._context, self._policy, self._retry_if
        )

    @overload
    def protect(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def protect(self, fn: Callable[P, T], /) -> Callable[P, T]: ...

    def protect(self, fn: Callable[P, Any], /) -> Callable[P, Any]:
        """``fn`` wrapped: each call runs as ``self.call(fn, ...)`` (a ``def``: ``call_sync``)."""
        return protect_with(fn, self)


def protect_with(fn: Callable[P, Any], using: Callable[[], Using] | Using) -> Callable[P, Any]:
    """``fn`` wrapped, each call run as ``using().call(fn, ...)``: every argument reaches it.

    ``using`` is a ``Using`` (fixed options: ``sw.protect``), or a function
    giving one at each call (``seawall.retry``, over the default seawall of the
    moment). An async function (``async_kind``: an ``async def``, a partial
    of one, an object with ``async def __call__``) is awaited on the event
    loop (its calls take ``run_call``'s lean first attempt); a plain ``def``
    runs in the calling thread (``call_sync``), sleeping it between attempts.
    An async generator function and a generator function are refused; a ``staticmethod`` or
    ``classmethod`` object gives one around the protected function.
    """
    if isinstance(fn, staticmethod | classmethod):  # stays one: @sw.protect over @staticmethod
        return cast(Callable[P, Any], type(fn)(protect_with(fn.__func__, using)))
    if not callable(fn):
        msg = f"seawall's decorators wrap a function; {fn!r} is not callable"
        raise TypeError(msg)
    kind = async_kind(fn)
    if kind == "async generator":
        msg = (
            f"seawall's decorators cannot protect {safe_name(fn)}: it is an async generator "
            f"function. {STREAMS}"
        )
        raise TypeError(msg)
    if kind is None:
        sync.refuse_generator(fn, "seawall's decorators")
    if isinstance(using, Using):
        fixed = using
        if kind is None:  # checked above: sync.call_fn need not check it at each call
            u = fixed
            return sync.protect(fn, u._sw, u._key, u._context, u._policy, u._retry_if)
        return _wrap_fixed(fn, fixed)
    get = using
    if kind is None:
        return sync.protect_each(fn, get)
    return _wrap_async(fn, get)


def _wrap_fixed(
    fn: Callable[P, Coroutine[Any, Any, T]], using: Using
) -> Callable[P, Coroutine[Any, Any, T]]:
    """``fn`` under fixed options: read once here, not at each call."""
    sw, key, context, policy, retry_if = (
        using._sw,
        using._key,
        using._context,
        using._policy,
        using._retry_if,
    )

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        result: T = await run_call(sw, fn, args, kwargs, key, context, policy, retry_if)
        return result

    return wrapper


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
