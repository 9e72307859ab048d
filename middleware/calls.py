"""Calls of plain functions: ``sw.call``, ``sw.call_sync``, ``sw.using(...)``, ``@sw.protect``.

The adapter for code that is not an HTTP request. Seawall's own options
(``key``, ``context``, ``policy``, ``on``) are kept apart from the wrapped
function's arguments: ``sw.using(...)`` takes them before the function, so
every keyword given to ``.call`` reaches the function. ``sw.call(fn, key=...)``
still works where ``fn`` has no parameter of that name; where it has one, it
raises a ``TypeError`` that says to use ``sw.using``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

from seawall import sync
from seawall._path.spec import CallSpec, call_key, coroutine_attempt
from seawall.context import merge as merge_context
from seawall.policy import Policy
from seawall.redact import redact_key

if TYPE_CHECKING:
    from seawall.engine import Seawall

__all__ = [
    "OPTION_NAMES",
    "Decorator",
    "Retried",
    "Using",
    "check_collisions",
    "protect_with",
    "check_options",
    "retry_predicate",
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

    def _spec(self, fn: Callable[..., Any]) -> CallSpec:
        key = self._key if self._key is not None else call_key(fn)
        sw = self._sw
        policy = self._policy or sw.policy_for_key(key)
        key = redact_key(key)  # shown in health(), metrics, logs: never a secret it holds
        return CallSpec(
            key=key,
            policy=policy,
            state=sw.state_for(key, policy),
            context=merge_context(self._context),
            llm=policy.llm,  # call(policy=Policy.for_llm()) is an LLM call, whatever its key
            retry_if=self._retry_if,
        )

    async def call(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """``await fn(*args, **kwargs)`` under protection; every keyword goes to ``fn``."""
        result: T = await self._sw.run(self._spec(fn), coroutine_attempt(fn, args, kwargs))
        return result

    def call_sync(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` under protection in this thread; every keyword goes to ``fn``.

        Waits between attempts sleep the thread (``seawall.sync``).
        """
        return sync.call(self._sw, self._spec(fn), fn, args, kwargs)

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

    An ``async def`` is awaited on the event loop; a plain ``def`` runs in the
    calling thread (``using().call_sync``), sleeping it between attempts.
    """
    if not callable(fn):
        msg = f"seawall's decorators wrap a function; {fn!r} is not callable"
        raise TypeError(msg)
    if not inspect.iscoroutinefunction(fn):
        return sync.protect(fn, lambda f, *a, **kw: using().call_sync(f, *a, **kw))

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        return await using().call(fn, *args, **kwargs)

    return wrapper
