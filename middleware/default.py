"""The module-level API: ``@seawall.retry`` over a default ``Seawall`` you can replace.

::

    @seawall.retry                                   # bare: the default policy
    async def fetch(url: str) -> bytes: ...

    @seawall.retry(key="db")                         # a plain def: the thread sleeps
    def query(sql: str) -> list[Row]: ...

    @seawall.retry(on=httpx.HTTPError, attempts=3)   # narrowed, like stamina
    async def fetch(url: str) -> bytes: ...

    seawall.configure(policy=seawall.Policy(...))    # replace the default Seawall

The decorated function looks the default ``Seawall`` up at each call, so
``configure`` applies to functions decorated before it. Test mode
(``seawall.testing``) covers it like any other ``Seawall``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, ParamSpec, TypeVar, cast, overload

import attrs

from seawall import calls
from seawall._path.spec import call_key
from seawall.engine import Seawall
from seawall.policy import Policy

__all__ = ["configure", "default_seawall", "retry"]

P = ParamSpec("P")
T = TypeVar("T")

_lock = threading.Lock()
_default: list[Seawall] = []  # zero or one: made on first use


def default_seawall() -> Seawall:
    """The ``Seawall`` behind ``@seawall.retry`` (made on first use)."""
    if not _default:
        with _lock:
            if not _default:
                _default.append(Seawall())
    return _default[0]


def configure(sw: Seawall | None = None, /, **options: Any) -> Seawall:
    """Replace the default ``Seawall``: give one, or ``Seawall``'s own arguments.

    ``seawall.configure(policy=seawall.Policy(...))`` makes a new one;
    ``seawall.configure(my_seawall)`` uses yours. The one it replaces keeps
    its state; close it yourself if it holds sessions.
    """
    if sw is not None and options:
        msg = (
            "seawall.configure(sw, ...): give either a Seawall or Seawall's arguments, "
            f"not both (got a Seawall and {', '.join(sorted(options))}=)"
        )
        raise TypeError(msg)
    if sw is not None and not isinstance(sw, Seawall):
        msg = f"seawall.configure({sw!r}): give a seawall.Seawall, or keyword arguments for one"
        raise TypeError(msg)
    new = sw if sw is not None else Seawall(**options)
    with _lock:
        _default[:] = [new]
    return new


def _check_attempts(attempts: int | None) -> None:
    if attempts is not None and (
        isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
    ):
        msg = (
            f"seawall.retry(attempts={attempts!r}): give the number of attempts, first "
            "one included, as a whole number >= 1"
        )
        raise ValueError(msg)


@overload
def retry(fn: Callable[P, Coroutine[Any, Any, T]], /) -> Callable[P, Coroutine[Any, Any, T]]: ...


@overload
def retry(fn: Callable[P, T], /) -> Callable[P, T]: ...


@overload
def retry(
    fn: None = None,
    /,
    *,
    on: calls.Retried | None = None,
    attempts: int | None = None,
    key: str | None = None,
    context: Mapping[str, Any] | None = None,
    policy: Policy | None = None,
) -> calls.Decorator: ...


def retry(
    fn: Callable[P, Any] | None = None,
    /,
    *,
    on: calls.Retried | None = None,
    attempts: int | None = None,
    key: str | None = None,
    context: Mapping[str, Any] | None = None,
    policy: Policy | None = None,
) -> Callable[P, Any] | calls.Decorator:
    """Protect a function with the default ``Seawall``; bare or with arguments.

    An ``async def`` is awaited on the event loop; a plain ``def`` runs in the
    calling thread, which sleeps between attempts (``docs/sync.md``).

    :param on: retry only these exception types (a type or a tuple), or the
        exceptions a predicate returns True for; others are raised at once.
        Without it, seawall's classification decides.
    :param attempts: at most this many attempts, the first included
        (default: the policy's ``max_attempts``).
    :param key: the breaker and budget to share (default: the function's
        qualified name); also picks the route policy of that name.
    :param context: call context (``seawall.context``) for every call.
    :param policy: the policy to use instead of the key's.
    """
    retry_if = calls.retry_predicate(on, "seawall.retry")
    _check_attempts(attempts)
    calls.check_options("seawall.retry", key, policy, context=context)

    def decorate(fn: Callable[P, Any]) -> Callable[P, Any]:
        inner = fn.__func__ if isinstance(fn, staticmethod | classmethod) else fn
        if not callable(inner):
            msg = f"seawall.retry wraps a function; {fn!r} is not callable"
            raise TypeError(msg)
        # Named as sw.call names it: a partial or callable object has no __qualname__.
        name = key if key is not None else call_key(inner)
        last: list[Policy] = []  # the base policy seen last, and ours made from it

        def policy_for(sw: Seawall) -> Policy:
            base = policy or sw.policy_for_key(name)
            if attempts is None:
                return base
            if not last or last[0] is not base:
                mine = attrs.evolve(base, retry=attrs.evolve(base.retry, max_attempts=attempts))
                last[:] = [base, mine]
            return last[1]

        def using() -> calls.Using:
            sw = default_seawall()
            # Options checked above, once: not again at each call (~0.8 µs, calls.Using).
            return calls.Using.checked(sw, name, context, policy_for(sw), retry_if)

        return calls.protect_with(fn, using)

    if fn is not None:
        return decorate(fn)
    return cast(calls.Decorator, decorate)
