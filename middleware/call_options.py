"""Seawall's own options of a call (``key``, ``context``, ``policy``, ``on``), checked.

``sw.call(fn, key=...)`` shares its keywords with ``fn``'s: a function that
takes an option of the same name makes the call ambiguous, and that is a
``TypeError`` that says to use ``sw.using``. The check runs on every call
given an option, so its common answer (a plain function that takes none of
them) is remembered per function's code (``check_call``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from types import CodeType, FunctionType
from typing import Any

from seawall._path.spec import call_key
from seawall.policy import Policy

__all__ = [
    "OPTION_NAMES",
    "Retried",
    "check_call",
    "check_collisions",
    "check_options",
    "retry_predicate",
]

#: Seawall's keyword options of ``sw.call``, which a wrapped function may also take.
OPTION_NAMES = ("key", "context", "policy")

#: What ``on=`` accepts: exception types, or a predicate over the exception.
Retried = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]


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


#: Per code object of a plain function: whether its parameters name one of ``OPTION_NAMES``.
#: Code objects, not functions: closures made per call share theirs, and a code
#: object holds no caller's data. Bounded: cleared when full.
_TAKES_OPTIONS: dict[CodeType, bool] = {}
_TAKES_OPTIONS_MAX = 4096


def _takes_options(code: CodeType) -> bool:
    """Whether a function with this code has a parameter named like an option (remembered)."""
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    found = any(name in names for name in OPTION_NAMES)
    if len(_TAKES_OPTIONS) >= _TAKES_OPTIONS_MAX:
        _TAKES_OPTIONS.clear()
    _TAKES_OPTIONS[code] = found
    return found


def check_call(
    where: str, fn: Callable[..., Any], n_args: int, key: object, context: object, policy: object
) -> None:
    """``check_options`` and ``check_collisions`` for ``sw.call(fn, *args, key=..., ...)``.

    A plain function with nothing in its ``__dict__`` (so no ``__wrapped__`` or
    ``__signature__`` lending it another signature) collides only if its own
    code names an option: that answer is remembered per code object, so the
    common call costs two lookups instead of a signature's.
    """
    if (key is not None and type(key) is not str) or (
        policy is not None and not isinstance(policy, Policy)
    ):
        check_options(where, key, policy)
    if type(fn) is FunctionType and not fn.__dict__:
        code = fn.__code__
        takes = _TAKES_OPTIONS.get(code)
        if takes is None:
            takes = _takes_options(code)
        if not takes:
            return
    check_collisions(fn, n_args, {"key": key, "context": context, "policy": policy})
