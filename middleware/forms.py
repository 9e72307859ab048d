"""The call forms of the facade: ``sw.call``, ``call_sync``, ``using``, ``attempts``,
``breaker``, ``@sw.protect`` and ``httpx_transport``.

Plain functions whose first parameter is the ``Seawall``: the class takes
each as a method (``call = forms.call``). Each only checks its options and
hands over to an adapter (``seawall.calls``, ``seawall.blocks``,
``seawall.guard``), which does the work.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from seawall import calls as _calls
from seawall import sync as _sync
from seawall.blocks import Attempts
from seawall.call_options import NO_OPTIONS, Retried, check_call, check_key
from seawall.calls import Using, run_call
from seawall.guard import BreakerGuard
from seawall.policy import Policy

if TYPE_CHECKING:
    import httpx
    import httpx2

    import seawall.httpx
    import seawall.httpx2
    from seawall.engine import Seawall

__all__ = ["attempts", "breaker", "call", "call_sync", "httpx_transport", "protect", "using"]

T = TypeVar("T")


def _lean(where: str, run: Callable[..., Any], typed: Callable[..., Any], name: str) -> Any:
    """The form that runs as ``sw.call`` (``run_call``) or ``sw.call_sync`` (``call_fn``):
    ``typed``'s behaviour, cheaper, with its signature and docstring.

    Keyword-only parameters with defaults cost a dict lookup each per call in
    CPython 3.11 (about 0.4k instructions for the three, 3 % of a lean
    ``sw.call``): ``key``, the common one, is the only one (taking it out of
    ``kwargs`` with ``pop`` cost 0.7k more); ``context`` and ``policy`` come out
    of ``kwargs``. ``help(sw.call)`` and ``inspect.signature`` show ``typed``'s
    options; type checkers see ``typed`` itself. ``where`` and ``run`` are read
    from the closure, as cheap as a global.
    """

    def lean(sw: Any, fn: Any, /, *args: Any, key: Any = None, **kwargs: Any) -> Any:
        if kwargs:
            context = kwargs.pop("context", None)
            policy = kwargs.pop("policy", None)
            if key is not None or context is not None or policy is not None:
                check_call(where, fn, len(args), key, context, policy)
            return run(sw, fn, args, kwargs, key, context, policy)
        if key is not None:
            # key="..." alone, the common form: check_call's answer, remembered per function.
            if type(key) is not str or id(fn) not in NO_OPTIONS:
                check_key(where, fn, len(args), key)
            return run(sw, fn, args, kwargs, key)
        return run(sw, fn, args, kwargs)

    lean.__signature__ = inspect.signature(typed)  # type: ignore[attr-defined]
    lean.__doc__ = typed.__doc__
    lean.__name__ = lean.__qualname__ = name
    return lean


def _call(
    sw: Seawall,
    fn: Callable[..., Awaitable[T]],
    /,
    *args: Any,
    key: str | None = None,
    context: Mapping[str, Any] | None = None,
    policy: Policy | None = None,
    **kwargs: Any,
) -> Coroutine[Any, Any, T]:
    """Run ``await fn(*args, **kwargs)`` under seawall's protection.

    ``key`` names the breaker and budget (default: ``fn``'s qualified name)
    and picks the route policy of that name. When it gives up on an
    exception, the original exception is raised with the attempt history
    in its ``__notes__``. If ``fn`` takes a ``key``, ``context`` or
    ``policy`` of its own, giving one here is a ``TypeError``: use
    ``sw.using(key=...).call(fn, key=...)``, where every keyword goes to ``fn``.
    Such mistakes raise at once; otherwise it returns the call to await.
    """
    # What type checkers and ``inspect.signature`` see; ``_lean``'s form is what
    # runs as ``sw.call`` (same behaviour, cheaper): keep the two in step.
    if key is not None or context is not None or policy is not None:
        check_call("sw.call", fn, len(args), key, context, policy)
    # Not a coroutine of its own: run_call's is awaited directly (one frame less).
    return run_call(sw, fn, args, kwargs, key, context, policy)


if TYPE_CHECKING:
    call = _call
else:
    call = _lean("sw.call", run_call, _call, "call")


def _call_sync(
    sw: Seawall,
    fn: Callable[..., T],
    /,
    *args: Any,
    key: str | None = None,
    context: Mapping[str, Any] | None = None,
    policy: Policy | None = None,
    **kwargs: Any,
) -> T:
    """``call`` for a plain function: ``fn(*args, **kwargs)`` in this thread, protected.

    Waits between attempts sleep the thread; the key's breaker, budget and
    counters are shared with async calls. See docs/sync.md.
    """
    # What type checkers and ``inspect.signature`` see; ``_lean``'s form is what runs as
    # ``sw.call_sync`` (same behaviour, cheaper): keep the two in step.
    if key is not None or context is not None or policy is not None:
        check_call("sw.call_sync", fn, len(args), key, context, policy)
    return _sync.call_fn(sw, fn, args, kwargs, key, context, policy)


if TYPE_CHECKING:
    call_sync = _call_sync
else:
    call_sync = _lean("sw.call_sync", _sync.call_fn, _call_sync, "call_sync")


def using(
    sw: Seawall,
    *,
    key: str | None = None,
    context: Mapping[str, Any] | None = None,
    policy: Policy | None = None,
    on: Retried | None = None,
) -> Using:
    """Seawall's options apart from the function's: ``sw.using(key="k").call(fn, key=1)``.

    ``on``: retry only these exception types (or those a predicate accepts).
    """
    return Using(sw, key=key, context=context, policy=policy, on=on)


def attempts(
    sw: Seawall,
    *,
    key: str,
    context: Mapping[str, Any] | None = None,
    policy: Policy | None = None,
    on: Retried | None = None,
) -> Attempts:
    """The block form: ``async for attempt in sw.attempts(key="k"): with attempt: ...``.

    See ``seawall.blocks`` (and docs/sync.md): a block's failure is retried
    or raised from the ``async for``; the block has no per-attempt time limit.
    """
    return Attempts(sw, key=key, context=context, policy=policy, on=on)


def breaker(
    sw: Seawall,
    key: str,
    *,
    policy: Policy | None = None,
    context: Mapping[str, Any] | None = None,
) -> BreakerGuard:
    """Guard a block with ``key``'s circuit breaker: ``async with sw.breaker("payments"):``,
    or ``with sw.breaker("payments"):`` in sync code (a thread).

    An open breaker raises ``CircuitOpenError`` before the block runs, unless a
    probe's verdict is near (``BreakerPolicy.hold``): then the block waits for
    it (a thread blocks; never on an event loop's thread). The block's
    exception is classified and counted, never retried or swallowed. See
    ``seawall.guard``.
    """
    return BreakerGuard(sw, key, policy=policy, context=context)


#: Decorator form of ``call``: ``@sw.protect`` or ``@sw.protect(key="search")``
#: (``seawall.calls.protect``); every argument of the decorated function reaches it.
protect = _calls.protect


# --- sw.httpx_transport ------------------------------------------------------------


@overload
def httpx_transport(
    sw: Seawall,
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    sync: Literal[False] | None = None,
    package: Literal["httpx"] | None = None,
) -> seawall.httpx.AsyncTransport: ...


@overload
def httpx_transport(
    sw: Seawall,
    transport: httpx.BaseTransport | None = None,
    *,
    sync: Literal[True],
    package: Literal["httpx"] | None = None,
) -> seawall.httpx.SyncTransport: ...


@overload
def httpx_transport(
    sw: Seawall,
    transport: httpx2.AsyncBaseTransport | None = None,
    *,
    sync: Literal[False] | None = None,
    package: Literal["httpx2"],
) -> seawall.httpx2.AsyncTransport: ...


@overload
def httpx_transport(
    sw: Seawall,
    transport: httpx2.BaseTransport | None = None,
    *,
    sync: Literal[True],
    package: Literal["httpx2"],
) -> seawall.httpx2.SyncTransport: ...


@overload
def httpx_transport(
    sw: Seawall, transport: httpx2.AsyncBaseTransport, *, sync: Literal[False] | None = None
) -> seawall.httpx2.AsyncTransport: ...


@overload
def httpx_transport(
    sw: Seawall, transport: httpx2.BaseTransport, *, sync: Literal[True]
) -> seawall.httpx2.SyncTransport: ...


def httpx_transport(
    sw: Seawall, transport: Any = None, *, sync: bool | None = None, package: str | None = None
) -> Any:
    """An httpx transport through ``sw``: ``httpx.AsyncClient(transport=...)``,
    or with ``sync=True`` for ``httpx.Client(transport=...)``; with
    ``package="httpx2"`` the same for httpx2's clients (the Anthropic SDK's).

    ``transport`` is the one that really sends (default
    ``httpx.AsyncHTTPTransport()``, or ``httpx.HTTPTransport()`` with
    ``sync=True``; httpx2's with ``package="httpx2"``); when given, its
    class says the package and direction. Needs ``seawall[httpx]`` (or
    httpx2); see ``docs/httpx.md``.
    """
    # Imported here, not at the top: only users of httpx (httpx2) need it.
    from seawall.httpx_transport import binding_for

    package, sync = binding_for(transport, sync, package)
    binding = importlib.import_module(f"seawall.{package}")
    return (binding.SyncTransport if sync else binding.AsyncTransport)(sw, transport)
