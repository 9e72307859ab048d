"""What adapters hand the attempt loop: one call's description and its attempts."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from types import MethodType
from typing import TYPE_CHECKING, Any

import attrs
from yarl import URL

from seawall.context import merge as merge_context
from seawall.errors import SeawallError
from seawall.policy import Policy
from seawall.redact import redact_text, redact_url
from seawall.state import KeyState

if TYPE_CHECKING:
    from seawall._path.registry import Route

__all__ = [
    "Attempt",
    "BrokenBody",
    "CallSpec",
    "FirstAttempt",
    "GENERATORS",
    "Misuse",
    "STREAMS",
    "answered_before",
    "async_kind",
    "attempt_timeout",
    "call_key",
    "called_already",
    "mark_answered",
    "coroutine_attempt",
    "first_misuse",
    "generator_function",
    "not_awaitable",
    "safe_name",
]


@attrs.define(slots=True)
class Attempt:
    """What one attempt returned: the value, and for HTTP the response's facts."""

    value: Any
    status: int | None = None
    headers: Mapping[str, str] | None = None
    body: bytes | None = None
    content_type: str = ""


class CallSpec:
    """One call as an adapter describes it to the attempt loop.

    ``twins`` maps each seawall error to the class raised through this adapter
    (the aiohttp middleware raises ``aiohttp.ClientConnectionError`` twins);
    ``wrap`` says which original exceptions must not escape unwrapped (aiohttp
    re-runs its whole middleware chain on some). Both come from the adapter:
    the loop knows no HTTP library. ``lend_for``: seconds a half-open probe's
    turn lasts when nothing can cut its attempt short (the block forms' body:
    the policy's attempt limit, which they do not apply; ``Settle.lend``).
    """

    __slots__ = (
        "_redacted",
        "context",
        "discard",
        "http",
        "idempotent",
        "key",
        "lend_for",
        "llm",
        "method",
        "policy",
        "replayable",
        "retry_if",
        "state",
        "twins",
        "url",
        "wrap",
    )

    def __init__(
        self,
        *,
        key: str,
        policy: Policy,
        state: KeyState,
        method: str = "CALL",
        url: URL | None = None,
        context: Mapping[str, Any],
        idempotent: bool = True,
        replayable: Callable[[], bool] | None = None,
        discard: Callable[[Any], None] | None = None,
        http: bool = False,
        llm: bool = False,
        twins: Mapping[type[SeawallError], type[SeawallError]] | None = None,
        wrap: Callable[[BaseException], bool] | None = None,
        retry_if: Callable[[BaseException], bool] | None = None,
        lend_for: float | None = None,
    ) -> None:
        self.key = key
        self.policy = policy
        self.state = state
        self.method = method
        self.url = url
        self.context = context
        self.idempotent = idempotent
        self.replayable = replayable
        self.discard = discard
        self.http = http
        self.llm = llm  # read rate-limit headers (only LLM APIs send the ones we know)
        self.twins = twins
        self.wrap = wrap
        # The caller's own choice of which exceptions to retry (``on=``): it
        # replaces the classification's retryable / retry_on / once-only rules.
        self.retry_if = retry_if
        self.lend_for = lend_for
        self._redacted: URL | None = None

    @property
    def redacted_url(self) -> URL | None:
        if self._redacted is None and self.url is not None:
            self._redacted = redact_url(self.url)
        return self._redacted

    def request_line(self) -> str:
        """``"GET https://host/path?key=***"``, or the key for non-HTTP calls."""
        if self.url is None:
            return f"{self.method} {self.key}"
        return f"{self.method} {self.redacted_url}"

    def error_class(self, kind: type[SeawallError]) -> type[SeawallError]:
        """``kind``, or its twin for this adapter."""
        twins = self.twins
        return twins.get(kind, kind) if twins else kind


class FirstAttempt:
    """An attempt an adapter already made, for ``run(first=...)``.

    The adapter did what the loop does before a first attempt
    (``KeyState.begin``) and sent it at ``started`` under a closed breaker
    with the policy's attempt limit. It did not count the attempt in the
    cooldown's in-flight count: the loop does, before settling it.
    ``result``/``exc`` are what the attempt gave (one of them is set).
    """

    __slots__ = ("ended", "exc", "result", "started")

    def __init__(
        self, started: float, ended: float, result: Attempt | None, exc: Exception | None
    ) -> None:
        self.started = started
        self.ended = ended
        self.result = result
        self.exc = exc


class BrokenBody(Exception):
    """Raised by an adapter when a response had a status but reading its body failed.

    The loop never re-sends such a request: it raises ``cause`` (with the
    attempt history) and gives the breaker no failure, since the upstream answered.
    """

    def __init__(self, cause: Exception, status: int) -> None:
        super().__init__(cause, status)
        self.cause = cause
        self.status = status


class Misuse(Exception):
    """Raised by an adapter for a programming error that must not be retried."""


def not_awaitable(fn: object, got: object) -> Misuse:
    """What ``sw.call(fn)`` raises (as a ``TypeError``) when ``fn(...)`` gave ``got``.

    ``fn`` is named as ``call_key`` names it (``safe_name``), never by
    ``repr(fn)``: a partial's repr holds its arguments, a bound method's its
    object's (API keys, headers).
    """
    label = safe_name(fn)
    kind = type(got).__name__
    if inspect.isasyncgen(got):
        return Misuse(f"{label}(...) returned {kind}, not an awaitable: {STREAMS}")
    return Misuse(
        f"{label}(...) returned {kind}, not an awaitable; sw.call, sw.using(...).call "
        "and @sw.protect on an async function await what the function returns: pass an "
        "async function (sw.call(fetch, url), not fetch(url)), or call a plain function "
        "with sw.call_sync(fn, ...)"
    )


def safe_name(fn: object) -> str:
    """``fn`` as error messages name it: ``call_key(fn)``, through the redactor."""
    return redact_text(call_key(fn))


#: What to do with an async generator function, which seawall cannot protect.
STREAMS = (
    "seawall cannot retry a stream item by item; protect the async function that consumes "
    "it (an async def that iterates it to the end), or put the loop over it in the block "
    "form: async for attempt in sw.attempts(key=...): with attempt: ... (docs/sync.md)"
)


#: What to do with a generator function, whose code runs only as it is iterated (after the
#: protected call returned it): seawall would count a success and protect nothing.
GENERATORS = (
    "its code runs only as the generator is iterated, after the protected call has returned "
    "it, so nothing in it would be retried or counted; protect the function that consumes "
    "it (a def that iterates it to the end, e.g. returning list(...)), or put the loop over "
    "it in the block form: for attempt in sw.attempts(key=...): with attempt: ... (docs/sync.md)"
)


def generator_function(fn: object) -> bool:
    """Whether ``fn`` (through partials, methods and ``__call__``, as ``async_kind``) is a
    plain generator function (``def`` with ``yield``)."""
    fn = _underneath(fn)
    if inspect.isgeneratorfunction(fn):
        return True
    if inspect.isfunction(fn) or isinstance(fn, type):
        return False
    return inspect.isgeneratorfunction(_underneath(getattr(type(fn), "__call__", None)))  # noqa: B004


def _underneath(fn: object) -> object:
    """The function under partials, bound methods and ``staticmethod``/``classmethod`` objects."""
    for _ in range(100):  # bounded: partials of partials, methods of partials
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif isinstance(fn, staticmethod | classmethod) or inspect.ismethod(fn):
            fn = fn.__func__
        else:
            break
    return fn


def async_kind(fn: object) -> str | None:
    """Whether calling ``fn`` gives a coroutine (``"coroutine"``), an async generator
    (``"async generator"``), or, as far as can be told before calling it, neither (``None``).

    Looks through partials, bound methods and ``staticmethod``/``classmethod``
    objects to the function underneath, and at the ``__call__`` of other
    objects (an object with ``async def __call__``). A plain ``def`` that
    returns a coroutine (a lambda) cannot be told apart: ``None``.
    """
    fn = _underneath(fn)
    candidates = [fn]
    if not inspect.isfunction(fn) and not isinstance(fn, type):
        candidates.append(_underneath(getattr(type(fn), "__call__", None)))  # noqa: B004
    for candidate in candidates:
        if inspect.iscoroutinefunction(candidate):
            return "coroutine"
        if inspect.isasyncgenfunction(candidate):
            return "async generator"
    return None


def called_already(fn: object) -> Misuse | None:
    """What ``sw.call(fn)`` raises (as a ``TypeError``) when ``fn`` is an awaitable, not a
    function: ``sw.call(fetch(url))``. ``None`` for anything else.

    Slow path only: asked after calling ``fn`` raised a ``TypeError``. A
    coroutine given is closed, so Python does not warn that it was never awaited.
    """
    if callable(fn) or not inspect.isawaitable(fn):
        return None
    name = getattr(fn, "__name__", None)
    if inspect.iscoroutine(fn):
        fn.close()
    name = redact_text(name) if isinstance(name, str) and name else "fetch"
    return Misuse(
        f"sw.call was given {type(fn).__name__} {name}(...), the result of calling an "
        f"async function, not the function to call: pass {name}, not {name}(...): "
        f"await sw.call({name}, ...) calls it once per attempt"
    )


def coroutine_attempt(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> Callable[[int], Awaitable[Attempt]]:
    """The attempts of ``sw.call(fn, *args, **kwargs)``: each awaits a fresh ``fn(...)``."""

    async def attempt(_number: int) -> Attempt:
        try:
            awaitable = fn(*args, **kwargs)
        except TypeError:
            misuse = called_already(fn)
            if misuse is not None:
                raise misuse from None
            raise
        if not inspect.isawaitable(awaitable):
            raise not_awaitable(fn, awaitable)
        return Attempt(await awaitable)

    return attempt


#: The code of ``coroutine_attempt``'s attempts, and where its ``fn`` sits in their closure.
_ATTEMPT_CODE = coroutine_attempt(print, (), {}).__code__
_FN_CELL = _ATTEMPT_CODE.co_freevars.index("fn")


def first_misuse(attempt: Callable[[int], Awaitable[Attempt]], exc: Exception) -> Misuse | None:
    """Whether an adapter's first attempt that raised ``exc`` was a misuse of ``sw.call``.

    For ``Loop.run`` when a lean first attempt raised a ``TypeError`` (so
    never on a success path): ``run_call`` made it without telling why, so
    this asks the ``fn`` held by ``attempt``, when ``attempt`` is one of
    ``coroutine_attempt``'s (``called_already``).
    """
    closure = getattr(attempt, "__closure__", None)
    if type(exc) is not TypeError or closure is None:
        return None
    if getattr(attempt, "__code__", None) is not _ATTEMPT_CODE:
        return None
    return called_already(closure[_FN_CELL].cell_contents)


def attempt_timeout(limit: float) -> TimeoutError:
    """What an attempt that ran out of time failed with."""
    return TimeoutError(f"attempt took longer than {limit:.3g}s")


#: The attribute a cancellation carries when it cut short the body of an answered request.
_ANSWERED = "_seawall_answered"


def mark_answered(cancelled: BaseException, status: int) -> None:
    """An adapter's note on a cancellation that came while it read the body of a response
    with ``status`` that must not be sent again (a success, or a request that is not
    idempotent): if the cancellation is the attempt's own time limit, the loop turns it
    into ``BrokenBody``, never into a retryable timeout."""
    setattr(cancelled, _ANSWERED, status)


def answered_before(timeout: Exception, cancelled: BaseException | None) -> Exception:
    """What an attempt cut by its time limit failed with: ``timeout``, or ``BrokenBody`` when
    the cancellation (``cancelled``, or the one ``asyncio.timeout`` raised ``timeout``
    from) cut short the body of a response that must not be sent again."""
    if cancelled is None:
        cancelled = timeout.__cause__
    status = getattr(cancelled, _ANSWERED, None)
    return timeout if status is None else BrokenBody(timeout, status)


def call_key(fn: object) -> str:
    """The default key of ``sw.call(fn)``: the qualified name of the function underneath.

    Never ``repr(fn)``: a ``functools.partial``'s repr holds its arguments
    (headers, tokens, query strings), and the key is shown in ``health()``,
    metrics labels, logs and events. Partials and bound methods are unwrapped;
    a callable object without ``__qualname__`` is named by its type.
    """
    for _ in range(100):  # bounded: partials of partials, methods of partials
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif isinstance(fn, MethodType):  # inspect.ismethod's test, without its call
            fn = fn.__func__
        else:
            break
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) and name else type(fn).__qualname__


def call_spec(
    route: Route,
    context: Mapping[str, Any] | None,
    retry_if: Callable[[BaseException], bool] | None,
    replayable: Callable[[], bool] | None = None,
) -> CallSpec:
    """The ``CallSpec`` of a call of a plain function (``sw.call``, ``call_sync``) under
    ``route``, which ``Registry.call_route`` gave (with its state). ``replayable``:
    whether its arguments can be given again (``seawall._path.replay``)."""
    assert route.state is not None, "call_route fills in the state"
    return CallSpec(
        key=route.key,
        policy=route.policy,
        state=route.state,
        context=merge_context(context),
        llm=route.llm,
        retry_if=retry_if,
        replayable=replayable,
    )
