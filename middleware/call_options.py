"""Seawall's own options of a call (``key``, ``context``, ``policy``, ``on``), checked.

``sw.call(fn, key=...)`` shares its keywords with ``fn``'s: a function that
takes an option of the same name makes the call ambiguous, and that is a
``TypeError`` that says to use ``sw.using``. The check runs on every call
given an option, so its common answer (a plain function that takes none of
them) is remembered per function's code (``check_call``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import weakref
from collections.abc import Callable, Mapping
from types import CodeType, FunctionType, MethodType
from typing import Any

from seawall._path.spec import call_key
from seawall.policy import Policy

__all__ = [
    "NO_OPTIONS",
    "OPTION_NAMES",
    "TAKES_OPTIONS",
    "Retried",
    "check_call",
    "check_collisions",
    "check_key",
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


def check_options(
    where: str,
    key: object,
    policy: object,
    *,
    context: object = None,
    key_required: bool = False,
) -> None:
    """Refuse a ``key`` that is not a string (or missing, when required), a ``policy``
    that is not a ``Policy`` and a ``context`` that is not a mapping, naming ``where``
    they were given."""
    if (key is not None or key_required) and not isinstance(key, str):
        msg = f"{where}(key={key!r}): give the key as a string"
        raise TypeError(msg)
    if policy is not None and not isinstance(policy, Policy):
        msg = f"{where}(policy={policy!r}): give a seawall.Policy"
        raise TypeError(msg)
    if context is not None and not isinstance(context, Mapping):
        msg = (
            f"{where}(context=<{type(context).__name__}>): give the call context as a "
            'mapping, such as context={"critical": True}'
        )
        raise TypeError(msg)


def _inspect(fn: object) -> Mapping[str, int | None]:
    """``fn``'s parameters that a keyword can fill: name -> position (``None``: keyword-only)."""
    try:
        params = list(inspect.signature(fn).parameters.values())  # type: ignore[arg-type]
    except (TypeError, ValueError):  # builtins and odd callables: nothing to collide with
        return {}
    found: dict[str, int | None] = {}
    for index, p in enumerate(params):
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            found[p.name] = index
        elif p.kind is inspect.Parameter.KEYWORD_ONLY:
            found[p.name] = None
    return found


#: ``_inspect``'s answers per function or per class of a callable object, held weakly:
#: remembering them must not keep a caller's function (its closure, its defaults) or
#: anything else alive after the call.
_PARAMETERS: weakref.WeakKeyDictionary[object, Mapping[str, int | None]] = (
    weakref.WeakKeyDictionary()
)


def _parameters(fn: object) -> Mapping[str, int | None]:
    """``_inspect(fn)``, remembered where that keeps nothing of the caller's alive.

    A function or class is remembered weakly (a closure made per call goes
    with its call). A callable object is remembered by its class, weakly,
    unless it has a signature of its own (``__signature__``, ``__wrapped__``).
    A partial is never remembered (each holds its own arguments): it has no
    parameter that its function has not, so when that function is a plain
    one whose code names no option, there is nothing to inspect
    (``_takes_options``, per code object); otherwise it is inspected afresh.
    """
    if isinstance(fn, FunctionType):
        holder: object = fn
    elif isinstance(fn, functools.partial):
        under = _plain_under(fn)
        if under is not None and not _takes_options(under.__code__):
            return {}
        return _inspect(fn)
    elif isinstance(fn, type):
        holder = fn
    elif "__signature__" in getattr(fn, "__dict__", ()) or hasattr(fn, "__wrapped__"):
        return _inspect(fn)  # a signature of its own, not its class's
    else:
        holder = type(fn)
    try:
        found = _PARAMETERS.get(holder)
    except TypeError:  # not weakly referenceable
        return _inspect(fn)
    if found is None:
        found = _inspect(fn)
        with contextlib.suppress(TypeError):
            _PARAMETERS[holder] = found
    return found


def _plain_under(fn: functools.partial[Any]) -> FunctionType | None:
    """The plain function under partials (one without ``__wrapped__`` or ``__signature__``)."""
    under: object = fn
    for _ in range(100):  # bounded: partials of partials
        if not isinstance(under, functools.partial):
            break
        under = under.func
    if type(under) is FunctionType and not under.__dict__:
        return under
    return None


def check_collisions(
    fn: Callable[..., Any], n_args: int, given: Mapping[str, object], where: str = "sw.call"
) -> None:
    """Refuse ``sw.call(fn, key=...)`` when ``fn`` has its own ``key`` parameter.

    Only options actually given are checked, so a plain ``sw.call(fn, x)``
    never inspects ``fn``. A parameter the ``n_args`` positional arguments
    already fill does not collide (``sw.call(get, "user:1", key="cache")``).
    A ``**kwargs`` catch-all is not taken for a parameter of that name: the
    option is seawall's (docs/sync.md, "No swallowed arguments").
    """
    names = [name for name, value in given.items() if value is not None]
    if not names:
        return
    target: Any = fn
    if inspect.ismethod(fn):  # the function, not each bound method (it holds its object)
        target, n_args = fn.__func__, n_args + 1
    own = _parameters(target)
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
    form = "call_sync" if where == "sw.call_sync" else "call"
    wait = "" if form == "call_sync" else "await "
    msg = (
        f"{where}({label}, {shown}...): {label} takes {shown} itself, so it is not clear "
        "whether it is for seawall or for the function. Give seawall's options first and "
        f"every keyword goes to the function: {wait}sw.using({clash[0]}=...).{form}({label}, "
        f"..., {clash[0]}=...)  (or decorate it with @sw.protect(...))"
    )
    raise TypeError(msg)


#: Per code object of a plain function: whether its parameters name one of ``OPTION_NAMES``.
#: Code objects, not functions: closures made per call share theirs, and a code
#: object holds no caller's data. Keyed by ``id``, the code object kept beside its
#: answer (so the id cannot be reused while it is here) and compared by identity:
#: a code object's own hash is computed afresh each time from its constants and
#: names (CPython does not keep it), ~1.9k instructions for a three-line function
#: and more for a longer one. Bounded: cleared when full.
TAKES_OPTIONS: dict[int, tuple[CodeType, bool]] = {}
TAKES_OPTIONS_MAX = 4096


def _takes_options(code: CodeType) -> bool:
    """Whether a function with this code has a parameter named like an option (remembered)."""
    known = TAKES_OPTIONS.get(id(code))
    if known is not None and known[0] is code:
        return known[1]
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    found = any(name in names for name in OPTION_NAMES)
    if len(TAKES_OPTIONS) >= TAKES_OPTIONS_MAX:
        TAKES_OPTIONS.clear()
    TAKES_OPTIONS[id(code)] = (code, found)
    return found


#: Functions whose check passed for good, by ``id``: ``sw.call(fn, key="...")`` and
#: ``sw.call_sync`` ask ``id(fn) in NO_OPTIONS`` and nothing else before they run (a
#: membership test of an int; reading ``__dict__``, ``__code__`` and the code memo
#: each call cost ~2.5k instructions, ``benchmarks/README.md``; a ``functools.wraps``
#: wrapper's signature ~1.2 µs). Only a function with no parameter named like an
#: option enters (by its code, or by the signature its ``__dict__`` lends it): its
#: answer does not depend on how many arguments are given. The value is a weak
#: reference whose callback takes the entry out as the function is freed, before its
#: ``id`` can be reused: nothing here keeps a function (or what its closure and
#: defaults hold) alive. A function given a ``__signature__`` or another ``__code__``
#: after its first call keeps its first answer. Bounded: cleared when full.
NO_OPTIONS: dict[int, _Entry] = {}
NO_OPTIONS_MAX = 4096


class _Entry(weakref.ref[FunctionType]):
    """``NO_OPTIONS``' value: a weak reference that knows its key (one callback for all)."""

    __slots__ = ("ident",)
    ident: int


def _forget(entry: _Entry) -> None:
    """The function is being freed: its entry goes before its ``id`` can be reused."""
    if NO_OPTIONS.get(entry.ident) is entry:  # (not an entry made since for another function)
        NO_OPTIONS.pop(entry.ident, None)  # (a thread may clear the memo meanwhile)


def _remember(fn: FunctionType) -> None:
    """Put ``fn`` in ``NO_OPTIONS`` until it is freed."""
    if len(NO_OPTIONS) >= NO_OPTIONS_MAX:
        NO_OPTIONS.clear()
    entry = _Entry(fn, _forget)
    entry.ident = id(fn)
    NO_OPTIONS[entry.ident] = entry


def check_key(where: str, fn: Callable[..., Any], n_args: int, key: object) -> None:
    """``check_call`` for ``key=...`` alone, when ``fn`` is not in ``NO_OPTIONS``.

    A plain function that passes is remembered there; a bound method whose
    function is remembered passes without more (a method made per access,
    ``self.client.get``, has an ``id`` of its own each time).
    """
    if type(key) is str and type(fn) is MethodType and id(fn.__func__) in NO_OPTIONS:
        return
    check_call(where, fn, n_args, key, None, None)
    plain: object = fn.__func__ if type(fn) is MethodType else fn
    if type(key) is str and type(plain) is FunctionType and not _names_an_option(plain):
        _remember(plain)


def _names_an_option(fn: FunctionType) -> bool:
    """Whether ``fn`` has a parameter named like an option, by its code or, when it has a
    signature of another (``functools.wraps``' ``__wrapped__``), by that signature."""
    if not fn.__dict__:
        return _takes_options(fn.__code__)
    try:
        own = _parameters(fn)
    except Exception:  # (check_call passed: a signature it could not read is not taken)
        return True
    return any(name in own for name in OPTION_NAMES)


def check_call(
    where: str, fn: Callable[..., Any], n_args: int, key: object, context: object, policy: object
) -> None:
    """``check_options`` and ``check_collisions`` for ``sw.call(fn, *args, key=..., ...)``.

    A plain function with nothing in its ``__dict__`` (so no ``__wrapped__`` or
    ``__signature__`` lending it another signature) collides only if its own
    code names an option: that answer is remembered per code object, so the
    common call costs two lookups instead of a signature's. So does a bound
    method or a partial of such a function.
    """
    # As many tests as a call with key="..." alone always made (the first): the others
    # only when key is missing or another option is given.
    if type(key) is not str or policy is not None or context is not None:  # noqa: SIM102
        if (
            (key is not None and type(key) is not str)
            or (policy is not None and not isinstance(policy, Policy))
            or (
                context is not None
                and type(context) is not dict
                and not isinstance(context, Mapping)
            )
        ):
            check_options(where, key, policy, context=context)
    # The function underneath a bound method or a partial: when it is plain and its
    # code names no option, neither can collide (a partial adds no parameter, a
    # bound method only fills the first), and nothing needs a signature.
    plain: object = fn
    if type(fn) is MethodType:
        plain = fn.__func__
    elif type(fn) is functools.partial:
        plain = _plain_under(fn)
    if type(plain) is FunctionType and not plain.__dict__ and not _takes_options(plain.__code__):
        return
    check_collisions(fn, n_args, {"key": key, "context": context, "policy": policy}, where)
