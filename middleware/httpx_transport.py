"""The httpx transports, for httpx and httpx2 alike: ``AsyncCore`` and ``SyncCore``.

A binding (``seawall.httpx``, ``seawall.httpx2``) mixes one of them into its
package's base transport and names its ``Kind`` (``seawall.httpx_core``).
Each request goes through seawall as the aiohttp middleware's do: the async
transport through ``Seawall.run``, the sync one through the thread's attempt
loop (``seawall.sync.run``). The sync transport makes a first attempt on an
idle key itself (its lean path, like the aiohttp middleware's and
``sw.call``'s): a success returns with the counters the loop would have
kept, a failure goes on to the loop as its ``FirstAttempt``.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from yarl import URL

from seawall import sync
from seawall._path.registry import Route
from seawall._path.spec import Attempt, CallSpec, FirstAttempt
from seawall._path.threads import SyncAttempt
from seawall.breaker import BreakerState
from seawall.context import current_context
from seawall.deadline import DEADLINE_VAR
from seawall.errors import SeawallError
from seawall.httpx_core import Kind, attempt, failed, run_sync
from seawall.llm import MODEL_BODY_LIMIT, model_from_json

if TYPE_CHECKING:
    from seawall.engine import Seawall

__all__ = ["AsyncCore", "SyncCore", "binding_for", "request_spec", "route_of", "warn_sdk_retries"]

logger = logging.getLogger("seawall.httpx")

InnerT = TypeVar("InnerT")

_CLOSED = BreakerState.CLOSED
_SDK_RETRY_HEADER = "x-stainless-retry-count"  # the OpenAI and Anthropic SDKs alike
_SDK_RETRY_KEY = _SDK_RETRY_HEADER.encode()

#: httpx's timeouts (``Request.extensions["timeout"]``), and the one each timeout
#: error says fired.
_TIMEOUTS = ("connect", "read", "write", "pool")
_TIMEOUT_OF = {
    "ConnectTimeout": "connect",
    "ReadTimeout": "read",
    "WriteTimeout": "write",
    "PoolTimeout": "pool",
}


def route_of(sw: Seawall, request: Any) -> Route:
    """The ``Route`` of ``request``'s origin, cached beside the aiohttp middleware's.

    Cached by ``(scheme, host, port)`` as httpx parsed them, which no aiohttp
    origin (a pair) or ``sw.call`` key (``None`` first) can equal: a hit costs
    no ``yarl.URL``. Read from the parsed reference httpx and httpx2 keep (the
    host as sent, IDNA-encoded): ``URL``'s three properties cost three Python
    calls a request. A release without it gets the properties.
    """
    url = request.url
    cache = sw.registry.cache
    try:
        parts = url._uri_reference
    except AttributeError:
        parts = url
    cache_key = (parts.scheme, parts.host, parts.port)
    route = cache.get(cache_key)
    if route is None:
        route = sw.registry.route_for(URL(str(url), encoded=True))
        cache[cache_key] = route
    return route


def _request_body(kind: Kind, request: Any) -> bytes | None:
    """The request's body when it is in memory (``json=``, ``content=b"..."``); else ``None``."""
    if not isinstance(request.stream, kind.mod.ByteStream):
        return None
    try:
        body: bytes = request.content
    except kind.mod.RequestNotRead:  # pragma: no cover - a ByteStream is always read
        return None
    return body


def request_spec(sw: Seawall, kind: Kind, request: Any, route: Route) -> CallSpec:
    """The ``CallSpec`` of one request (every kind alike)."""
    key, policy = route.key, route.policy
    method = request.method
    if policy.key == "model":
        body = _request_body(kind, request)
        model = model_from_json(body) if body and len(body) <= MODEL_BODY_LIMIT else None
        key = f"{key}#{model}" if model else key
        state = sw.registry.state_for(key, policy)
    else:
        state = route.state = route.state or sw.registry.state_for(key, policy)
    byte_stream = kind.mod.ByteStream
    return CallSpec(
        key=key,
        policy=policy,
        state=state,
        method=method,
        url=URL(str(request.url), encoded=True),
        context=current_context(),
        idempotent=method in policy.retry.retry_methods or "idempotency-key" in request.headers,
        replayable=lambda: isinstance(request.stream, byte_stream),
        discard=kind.discard,
        http=True,
        llm=route.llm,
        twins=kind.twins,
    )


class _Core(Generic[InnerT]):
    """What both transports keep: the seawall, the inner transport, the warning flag.

    ``InnerT`` is the type of the transport wrapped (a binding names it); by
    default the package's own HTTP transport (``Kind.default``).
    """

    #: The package and direction; set by each binding.
    kind: ClassVar[Kind]

    def __init__(self, sw: Seawall, transport: InnerT | None = None) -> None:
        self.sw = sw
        #: The transport that really sends; closing this one closes it.
        self.transport: InnerT = self.kind.default() if transport is None else transport
        self._warned = False

    def _raised(self, exc: SeawallError, request: Any) -> None:
        """Seawall's error is the package's ``RequestError``: give it the request."""
        if isinstance(exc, self.kind.mod.RequestError):
            exc.request = request


class AsyncCore(_Core[InnerT]):
    """The async transport: every request through ``Seawall.run``."""

    async def handle_async_request(self, request: Any) -> Any:
        if not self._warned:
            self._warned = warn_sdk_retries(request)
        sw, kind = self.sw, self.kind
        inner: Any = self.transport
        spec = request_spec(sw, kind, request, route_of(sw, request))
        try:
            return await sw.run(spec, lambda _number: attempt(kind, sw, spec, inner, request))
        except SeawallError as exc:
            self._raised(exc, request)
            raise

    async def aclose(self) -> None:
        inner: Any = self.transport
        await inner.aclose()


class SyncCore(_Core[InnerT]):
    """The sync transport: a lean first attempt on an idle key, else the thread's loop."""

    def handle_request(self, request: Any) -> Any:
        if not self._warned and _sdk_retry(request.headers):  # a call less than warn_...
            self._warned = warn_sdk_retries(request)
        sw = self.sw
        inner: Any = self.transport
        route = route_of(sw, request)
        state = route.state
        first = None
        if state is not None and route.fast:
            breaker, cooldown = state.breaker, state.cooldown
            clock = sw.clock
            started = clock()
            if (
                breaker.state is _CLOSED
                and not breaker.ramp_until  # a ramp (even one a stall left behind) queues calls
                and cooldown.rate is None
                and cooldown.until <= started
                and DEADLINE_VAR.get() is None  # a deadline: the loop checks it first
            ):
                # KeyState.begin waits for the attempt's end, as on the async lean paths:
                # one locked section a request, and a success is one count (lean_success).
                lock = state.lock  # other threads and the event loop share this key
                exc: Exception | None = None
                result = None
                try:
                    resp = inner.handle_request(request)
                    if resp.status_code >= 400:
                        result = run_sync(failed(self.kind, resp, request.method))
                except Exception as caught:
                    exc = caught
                except BaseException:
                    with lock:
                        state.begin(started)  # started, then interrupted: never retried
                    raise
                ended = clock()
                with lock:
                    if result is None and exc is None:
                        state.budget.on_request(started)
                        if not breaker.quiet:
                            breaker.succeeded()
                        state.stats.lean_success(ended - started)  # request, attempt, success
                        return resp
                    state.begin(started)  # a failure: counted, then handed to the loop
                first = FirstAttempt(started, ended, result, exc)
        return self._through_loop(route, request, first)

    def _through_loop(self, route: Route, request: Any, first: FirstAttempt | None) -> Any:
        sw, kind = self.sw, self.kind
        inner: Any = self.transport
        spec = request_spec(sw, kind, request, route)
        attempts = sync.run(sw, spec, first)
        try:
            for one in attempts:
                with one:
                    if one.time_left is None:
                        one.result = run_sync(attempt(kind, sw, spec, inner, request))
                    else:
                        one.result = self._within(one, one.time_left, spec, request)
        except SeawallError as exc:
            self._raised(exc, request)
            raise
        return attempts.value

    def _within(self, one: SyncAttempt, left: float, spec: CallSpec, request: Any) -> Attempt:
        """An attempt bounded by the caller's deadline, ``left`` seconds away.

        A thread cannot be cut short, but httpx can be told: each of its timeouts
        (connect, write, pool, and each read up to the status and an error body
        seawall peeks at) is at most ``left`` for this attempt, then the caller's
        own again (for the body the caller reads). A timeout that fired only because
        of that bound is the caller's deadline, not the upstream's failure (``cut``).
        """
        sw, kind = self.sw, self.kind
        extensions = request.extensions
        own = extensions.get("timeout")
        given = own if isinstance(own, dict) else {}
        bounded = {}
        shortened = set()
        for name in _TIMEOUTS:
            value = given.get(name)
            if value is None or value > left:
                value = left
                shortened.add(name)
            bounded[name] = value
        extensions["timeout"] = {**given, **bounded}
        try:
            return run_sync(attempt(kind, sw, spec, self.transport, request))
        except kind.mod.TimeoutException as exc:
            if _TIMEOUT_OF.get(type(exc).__name__) in shortened:
                one.cut()
            raise
        finally:
            if own is None:
                extensions.pop("timeout", None)
            else:
                extensions["timeout"] = own

    def close(self) -> None:
        inner: Any = self.transport
        inner.close()


def _sdk_retry(headers: Any) -> bool:
    """Whether ``headers`` say an SDK re-sends the request (a retry count above 0).

    Read from the headers' ``(raw, lower-cased, value)`` byte triples, as httpx
    and httpx2 keep them: ``headers.get`` works out the headers' encoding
    first, on every request, and was the sync lean path's largest cost. A
    release without them gets ``get``.
    """
    try:
        items = headers._list
    except AttributeError:
        return headers.get(_SDK_RETRY_HEADER, "0") not in ("", "0")
    for _raw, key, value in items:
        if key == _SDK_RETRY_KEY:
            return value not in (b"", b"0")
    return False


def warn_sdk_retries(request: Any) -> bool:
    """Warn (once per transport: the caller keeps the flag) when an SDK re-sends a request."""
    if not _sdk_retry(request.headers):
        return False
    logger.warning(
        "an SDK client is retrying a request seawall already retried (its "
        "max_retries is not 0), which multiplies attempts: create the client with "
        "max_retries=0 and let seawall retry"
    )
    return True


# --- which binding serves a transport --------------------------------------------------

PACKAGES = ("httpx", "httpx2")


def binding_for(transport: object, sync: bool | None, package: str | None) -> tuple[str, bool]:
    """The package (``"httpx"``/``"httpx2"``) and direction (sync?) of ``sw.httpx_transport``.

    Read from ``transport``'s base class when one is given (its package is in
    ``sys.modules`` then: nothing is imported; and not from class names: the
    OpenAI SDK renames httpx2's); otherwise ``package`` (default httpx) and ``sync``
    (default async). An argument that contradicts the transport is an error.
    """
    if package is not None and package not in PACKAGES:
        msg = f"sw.httpx_transport(package={package!r}): use package='httpx' or package='httpx2'"
        raise ValueError(msg)
    if transport is None:
        return package or "httpx", bool(sync)
    for found in PACKAGES:
        mod: Any = sys.modules.get(found)
        if mod is not None and isinstance(transport, mod.AsyncBaseTransport | mod.BaseTransport):
            found_sync = isinstance(transport, mod.BaseTransport)
            break
    else:
        msg = (
            f"sw.httpx_transport({type(transport).__name__}(...)): not an httpx or httpx2 "
            "transport; pass e.g. httpx.AsyncHTTPTransport(), httpx.HTTPTransport() "
            "(with sync=True) or httpx2.AsyncHTTPTransport()"
        )
        raise TypeError(msg)
    if package not in (None, found) or sync not in (None, found_sync):
        given = f"package={package!r}" if package not in (None, found) else f"sync={sync}"
        msg = (
            f"sw.httpx_transport({type(transport).__name__}(...), {given}): the transport "
            f"is {'a sync' if found_sync else 'an async'} {found} transport; drop {given} "
            "or pass a transport that matches it"
        )
        raise ValueError(msg)
    return found, found_sync
