"""Shared scaffolding for the benchmarks: upstream, drivers, variants, reports.

- ``Upstream``: a tiny scripted HTTP/1.1 server on 127.0.0.1 in its own process
  (so the client's CPU time is the client's alone). It answers ``GET /`` by the
  phase its script is in (``ok``, ``down`` = 503, ``errors`` = random 500s,
  ``ratelimit`` = a token bucket answering 429 with ``Retry-After`` and
  ``retry-after-ms``) and counts every answer per 100 ms bucket. Control and
  statistics are plain ``GET /_script?...`` and ``GET /_stats``.
- ``closed_loop`` (N requests through C workers) and ``open_loop`` (a fixed
  arrival rate of logical requests, bounded in count and time) drivers.
- ``VARIANTS``: bare aiohttp, a pass-through middleware, the cookbook retry
  middleware, aiohttp-retry, tenacity, stamina, purgatory + tenacity and
  seawall, each configured equivalently (``RETRIES`` retries, exponential
  backoff from ``BASE_DELAY`` capped at ``MAX_DELAY``, breakers at
  ``BREAKER_FAILURES`` failures / ``RECOVERY`` s).
- ``table``/``median`` helpers and the machine description for RESULTS.md.

Only 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

# --- the equivalent configuration every peer gets -----------------------------

RETRIES = 3  # retries after the first attempt: 4 attempts in all
ATTEMPTS = RETRIES + 1
BASE_DELAY = 0.1
MAX_DELAY = 2.0
BREAKER_FAILURES = 5
RECOVERY = 2.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BUCKET = 0.1  # seconds per load bucket

# --- the upstream (runs in a subprocess) ---------------------------------------------


def _response(status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    reason = {200: "OK", 429: "Too Many Requests", 500: "Internal Server Error"}.get(
        status, "Service Unavailable" if status == 503 else "X"
    )
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


_OK = _response(200, b"ok")
_DOWN = _response(503, b"down")
_ERROR = _response(500, b"error")


class _Script:
    """Phases on the shared monotonic clock, and counts per 100 ms bucket."""

    def __init__(self) -> None:
        self.reset({"t0": time.monotonic(), "phases": [], "seed": 0})

    def reset(self, spec: dict[str, Any]) -> None:
        self.t0 = float(spec["t0"])
        self.phases: list[tuple[float, str, float, float]] = []
        at = self.t0
        for duration, mode, *args in spec["phases"]:
            arg = float(args[0]) if args else 0.0
            burst = float(args[1]) if len(args) > 1 else 1.0
            self.phases.append((at + float(duration), mode, arg, burst))
            at += float(duration)
        self.rng = random.Random(spec.get("seed", 0))
        self.counts: dict[int, dict[int, int]] = {}
        self.tokens = 0.0
        self.refilled = self.t0

    def answer(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """The status, extra headers and body for ``GET /`` now; counted."""
        now = time.monotonic()
        mode, arg, burst = "ok", 0.0, 1.0
        for end, phase_mode, phase_arg, phase_burst in self.phases:
            if now < end:
                if now >= self.t0:
                    mode, arg, burst = phase_mode, phase_arg, phase_burst
                break
        headers: list[tuple[str, str]] = []
        if mode == "down":
            status, body = 503, b"down"
        elif mode == "errors" and self.rng.random() < arg:
            status, body = 500, b"error"
        elif mode == "ratelimit":
            self.tokens = min(burst, self.tokens + (now - self.refilled) * arg)
            self.refilled = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                status, body = 200, b"ok"
            else:
                wait = (1.0 - self.tokens) / arg
                status, body = 429, b"slow down"
                headers = [
                    ("Retry-After", str(max(1, math.ceil(wait)))),
                    ("retry-after-ms", str(max(1, math.ceil(wait * 1000)))),
                ]
        else:
            status, body = 200, b"ok"
        index = int((now - self.t0) // BUCKET)
        per_status = self.counts.setdefault(status, {})
        per_status[index] = per_status.get(index, 0) + 1
        return status, headers, body

    def raw_answer(self) -> bytes:
        status, headers, body = self.answer()
        if status == 200:
            return _OK
        if status == 503:
            return _DOWN
        if status == 500:
            return _ERROR
        return _response(status, body, headers)

    def stats_json(self) -> bytes:
        return json.dumps(
            {str(s): {str(i): n for i, n in b.items()} for s, b in self.counts.items()}
        ).encode()

    def stats(self) -> bytes:
        return _response(200, self.stats_json(), [("Content-Type", "application/json")])


class _Http(asyncio.Protocol):
    """Just enough HTTP/1.1 for keep-alive GETs without bodies."""

    def __init__(self, script: _Script) -> None:
        self.script = script
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        assert self.transport is not None
        for _ in range(10_000):  # bounded: pipelined requests in one read
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            target = head.split(b" ", 2)[1].decode()
            if target == "/" or target.startswith("/?"):
                self.transport.write(self.script.raw_answer())
            elif target.startswith("/_script"):
                query = parse_qs(urlsplit(target).query)
                self.script.reset(json.loads(query["spec"][0]))
                self.transport.write(_response(200, b"reset"))
            elif target.startswith("/_stats"):
                self.transport.write(self.script.stats())
            else:
                self.transport.write(_response(404, b"no such path"))


async def _serve(kind: str) -> None:
    script = _Script()
    loop = asyncio.get_running_loop()
    if kind == "raw":
        server = await loop.create_server(lambda: _Http(script), "127.0.0.1", 0, backlog=1024)
    else:
        from aiohttp import web

        async def handle(request: web.BaseRequest) -> web.Response:
            path = request.path
            if path == "/":
                status, headers, body = script.answer()
                return web.Response(status=status, body=body, headers=headers)
            if path == "/_script":
                script.reset(json.loads(request.query["spec"]))
                return web.Response(text="reset")
            if path == "/_stats":
                return web.Response(body=script.stats_json(), content_type="application/json")
            return web.Response(status=404, text="no such path")

        server = await loop.create_server(
            web.Server(handle, access_log=None), "127.0.0.1", 0, backlog=1024
        )
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    # Bounded: the parent terminates us; we also stop by ourselves after an hour.
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(3600)
    server.close()


class Upstream:
    """The scripted upstream in a subprocess: ``async with Upstream() as up``."""

    def __init__(self, kind: str = "aiohttp") -> None:
        if kind not in ("aiohttp", "raw"):
            raise ValueError(f"Upstream(kind={kind!r}): use 'aiohttp' or 'raw'")
        self.kind = kind
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", self.kind],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"upstream did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}/"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def __enter__(self) -> Upstream:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def script(
        self, phases: Sequence[Sequence[Any]], *, t0: float | None = None, seed: int = 0
    ) -> float:
        """Install ``phases`` (``(seconds, mode, arg...)``) from ``t0``; return ``t0``."""
        t0 = time.monotonic() + 0.05 if t0 is None else t0
        spec = json.dumps({"t0": t0, "phases": [list(p) for p in phases], "seed": seed})
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.url + "_script", params={"spec": spec}) as resp,
        ):
            resp.raise_for_status()
        return t0

    async def stats(self) -> dict[int, dict[int, int]]:
        """``{status: {bucket index: answers}}`` since the script was installed."""
        async with aiohttp.ClientSession() as session, session.get(self.url + "_stats") as resp:
            data = await resp.json(content_type=None)
        return {int(s): {int(i): n for i, n in b.items()} for s, b in data.items()}


# --- variants -------------------------------------------------------------------------

Fetch = Callable[[str], Awaitable[str]]


class StatusError(Exception):
    """A retryable status, raised for the exception-driven retry libraries."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _describe(exc: BaseException) -> str:
    if isinstance(exc, StatusError):
        return f"http_{exc.status}"
    return type(exc).__name__


@dataclass
class Variant:
    """One client stack: ``async with variant.open() as fetch``; ``await fetch(url)``."""

    name: str
    label: str
    open: Callable[[], contextlib.AbstractAsyncContextManager[Fetch]]
    stats: Callable[[], dict[str, Any]] = field(default=dict)


def _connector() -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=100)


async def _read(resp: aiohttp.ClientResponse) -> str:
    await resp.read()
    return "ok" if resp.status < 400 else f"http_{resp.status}"


def _session_fetch(session: aiohttp.ClientSession) -> Fetch:
    async def fetch(url: str) -> str:
        try:
            async with session.get(url) as resp:
                return await _read(resp)
        except Exception as exc:
            return _describe(exc)

    return fetch


@contextlib.asynccontextmanager
async def _bare() -> AsyncIterator[Fetch]:
    async with aiohttp.ClientSession(connector=_connector()) as session:
        yield _session_fetch(session)


async def passthrough_middleware(
    req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """The cheapest possible client middleware."""
    return await handler(req)


@contextlib.asynccontextmanager
async def _passthrough() -> AsyncIterator[Fetch]:
    async with aiohttp.ClientSession(
        connector=_connector(), middlewares=(passthrough_middleware,)
    ) as session:
        yield _session_fetch(session)


def _full_jitter(retry: int) -> float:
    return random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**retry))


async def cookbook_retry_middleware(
    req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """The documented pattern: loop on ``handler`` with exponential backoff."""
    for retry in range(RETRIES + 1):
        last = retry == RETRIES
        try:
            resp = await handler(req)
        except (aiohttp.ClientConnectionError, TimeoutError):
            if last:
                raise
        else:
            if resp.status not in RETRY_STATUSES or last:
                return resp
            resp.release()
        await asyncio.sleep(_full_jitter(retry))
    raise AssertionError("unreachable")


@contextlib.asynccontextmanager
async def _cookbook() -> AsyncIterator[Fetch]:
    async with aiohttp.ClientSession(
        connector=_connector(), middlewares=(cookbook_retry_middleware,)
    ) as session:
        yield _session_fetch(session)


@contextlib.asynccontextmanager
async def _aiohttp_retry() -> AsyncIterator[Fetch]:
    from aiohttp_retry import ExponentialRetry, RetryClient

    options = ExponentialRetry(
        attempts=ATTEMPTS,
        start_timeout=BASE_DELAY,
        max_timeout=MAX_DELAY,
        factor=2.0,
        statuses=set(RETRY_STATUSES),
        exceptions={aiohttp.ClientConnectionError, asyncio.TimeoutError},
    )
    session = aiohttp.ClientSession(connector=_connector())
    client = RetryClient(client_session=session, retry_options=options, raise_for_status=False)
    try:

        async def fetch(url: str) -> str:
            try:
                async with client.get(url) as resp:
                    return await _read(resp)
            except Exception as exc:
                return _describe(exc)

        yield fetch
    finally:
        await client.close()


async def _get_or_raise(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as resp:
        await resp.read()
        if resp.status in RETRY_STATUSES:
            raise StatusError(resp.status)
        return "ok" if resp.status < 400 else f"http_{resp.status}"


_RETRY_ON = (aiohttp.ClientConnectionError, asyncio.TimeoutError, StatusError)


def _tenacity_retrying() -> Any:
    import tenacity

    return tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_exponential_jitter(initial=BASE_DELAY, max=MAX_DELAY),
        retry=tenacity.retry_if_exception_type(_RETRY_ON),
        reraise=True,
    )


@contextlib.asynccontextmanager
async def _tenacity() -> AsyncIterator[Fetch]:
    async with aiohttp.ClientSession(connector=_connector()) as session:

        async def fetch(url: str) -> str:
            try:
                async for attempt in _tenacity_retrying():
                    with attempt:
                        return await _get_or_raise(session, url)
            except Exception as exc:
                return _describe(exc)
            raise AssertionError("unreachable")

        yield fetch


@contextlib.asynccontextmanager
async def _stamina() -> AsyncIterator[Fetch]:
    import stamina
    import stamina.instrumentation

    # No retry logging to stderr (a user would route it; the count is the same).
    stamina.instrumentation.set_on_retry_hooks([])
    async with aiohttp.ClientSession(connector=_connector()) as session:

        async def fetch(url: str) -> str:
            try:
                async for attempt in stamina.retry_context(
                    on=_RETRY_ON,
                    attempts=ATTEMPTS,
                    timeout=None,
                    wait_initial=BASE_DELAY,
                    wait_max=MAX_DELAY,
                    wait_exp_base=2,
                ):
                    with attempt:
                        return await _get_or_raise(session, url)
            except Exception as exc:
                return _describe(exc)
            raise AssertionError("unreachable")

        yield fetch


class _PurgatoryStats:
    def __init__(self) -> None:
        self.trips = 0

    def __call__(self, name: str, event_name: str, event: Any) -> None:
        if event_name == "state_changed" and getattr(event, "state", "") == "opened":
            self.trips += 1


_purgatory_stats: dict[str, int] = {}


@contextlib.asynccontextmanager
async def _purgatory_tenacity() -> AsyncIterator[Fetch]:
    from purgatory import AsyncCircuitBreakerFactory
    from purgatory.domain.model import OpenedState

    factory = AsyncCircuitBreakerFactory(default_threshold=BREAKER_FAILURES, default_ttl=RECOVERY)
    listener = _PurgatoryStats()
    factory.add_listener(listener)
    _purgatory_stats["trips"] = 0
    async with aiohttp.ClientSession(connector=_connector()) as session:

        async def fetch(url: str) -> str:
            try:
                async for attempt in _tenacity_retrying():
                    with attempt:
                        # tenacity outside, the breaker around each attempt; an open
                        # breaker (OpenedState) is not retried.
                        async with await factory.get_breaker("upstream"):
                            return await _get_or_raise(session, url)
            except OpenedState:
                return "breaker_open"
            except Exception as exc:
                return _describe(exc)
            finally:
                _purgatory_stats["trips"] = listener.trips
            raise AssertionError("unreachable")

        yield fetch


_seawall_last: list[Any] = []


def seawall_policy() -> Any:
    """seawall with the equivalent configuration; every other field its default."""
    import seawall

    return seawall.Policy(
        retry=seawall.RetryPolicy(
            max_attempts=ATTEMPTS, base_delay=BASE_DELAY, max_delay=MAX_DELAY
        ),
        breaker=seawall.BreakerPolicy(
            failure_threshold=BREAKER_FAILURES, recovery_timeout=RECOVERY
        ),
    )


def seawall_whatif_policy() -> Any:
    """Not a peer-equivalent: what the 30 %-errors analysis suggests (see README).

    The consecutive-failure rule is effectively off (before db55426 it counted
    attempts, and at hundreds of attempts per second 5 failures in a row
    happened by chance at 30 % errors), the failure-rate rule (0.5 over 100
    attempts, at least 20) does the tripping, and the budget lets 3 retries
    cover 30 % errors (they need about 0.42 retries per request; the default
    ratio was 0.2 then and is 0.5 now).
    """
    import attrs

    base = seawall_policy()
    return attrs.evolve(
        base,
        breaker=attrs.evolve(base.breaker, failure_threshold=1000),
        budget=attrs.evolve(base.budget, ratio=0.5),
    )


def _seawall_with(policy: Callable[[], Any]) -> Callable[[], Any]:
    @contextlib.asynccontextmanager
    async def open_seawall() -> AsyncIterator[Fetch]:
        import seawall

        sw = seawall.Seawall(policy(), entrypoints=False)
        _seawall_last[:] = [sw]
        async with (
            sw,
            aiohttp.ClientSession(
                connector=_connector(), middlewares=(sw.middleware(),)
            ) as session,
        ):
            yield _session_fetch(session)

    return open_seawall


@contextlib.asynccontextmanager
async def _seawall() -> AsyncIterator[Fetch]:
    import seawall

    sw = seawall.Seawall(seawall_policy(), entrypoints=False)
    _seawall_last[:] = [sw]
    async with (
        sw,
        aiohttp.ClientSession(connector=_connector(), middlewares=(sw.middleware(),)) as session,
    ):
        yield _session_fetch(session)


def _seawall_stats() -> dict[str, Any]:
    if not _seawall_last:
        return {}
    sw = _seawall_last[0]
    trips = 0
    rejections = 0
    for state in sw.registry.view.values():
        trips += state.stats.transitions.get("closed->open", 0)
        rejections += sum(state.stats.rejections.values())
    return {"trips": trips, "rejections": rejections}


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant("bare", "bare aiohttp", _bare),
        Variant("passthrough", "pass-through middleware", _passthrough),
        Variant("cookbook", "cookbook retry middleware", _cookbook),
        Variant("aiohttp_retry", "aiohttp-retry", _aiohttp_retry),
        Variant("tenacity", "tenacity", _tenacity),
        Variant("stamina", "stamina", _stamina),
        Variant(
            "purgatory_tenacity",
            "purgatory + tenacity",
            _purgatory_tenacity,
            lambda: {"trips": _purgatory_stats.get("trips", 0)},
        ),
        Variant("seawall", "seawall", _seawall, _seawall_stats),
        Variant(
            "seawall_whatif",
            "seawall what-if (rate-only breaker, budget 0.5)",
            _seawall_with(seawall_whatif_policy),
            _seawall_stats,
        ),
    ]
}

# --- drivers -----------------------------------------------------------------------------


async def closed_loop(
    fetch: Fetch, url: str, total: int, concurrency: int, limit: float | None = None
) -> dict[str, Any]:
    """``total`` requests through ``concurrency`` workers; wall and CPU seconds.

    ``limit`` bounds the run in seconds (default: a minute, or 10 ms a request)."""
    remaining = [total]
    outcomes: dict[str, int] = {}

    async def worker() -> None:
        for _ in range(total):  # bounded
            if remaining[0] <= 0:
                return
            remaining[0] -= 1
            result = await fetch(url)
            outcomes[result] = outcomes.get(result, 0) + 1

    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with asyncio.timeout(limit or max(60.0, total / 100)):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"wall": wall, "cpu": cpu, "requests": total, "outcomes": outcomes}


@dataclass
class Logical:
    """One logical request of an open-loop run (times relative to ``t0``)."""

    start: float
    end: float
    result: str

    @property
    def ok(self) -> bool:
        return self.result == "ok"


async def open_loop(
    fetch: Fetch, url: str, *, t0: float, rate: float, duration: float, cutoff: float = 5.0
) -> list[Logical]:
    """Start ``rate`` logical requests per second from ``t0`` for ``duration`` s.

    Open loop: arrivals do not wait for answers. Each logical request is cut
    off after ``cutoff`` s (result ``"timeout"``).
    """
    total = int(rate * duration)
    records: list[Logical] = []

    async def one(due: float) -> None:
        start = time.monotonic()
        try:
            async with asyncio.timeout(cutoff):
                result = await fetch(url)
        except TimeoutError:
            result = "timeout"
        records.append(Logical(start - t0, time.monotonic() - t0, result))

    tasks: list[asyncio.Task[None]] = []
    delay = t0 - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    for i in range(total):
        due = t0 + i / rate
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(due)))
    async with asyncio.timeout(cutoff + 5.0):
        await asyncio.gather(*tasks)
    return records


async def run_variant_open(
    variant: Variant,
    upstream: Upstream,
    phases: Sequence[Sequence[Any]],
    *,
    rate: float,
    seed: int,
    duration: float | None = None,
) -> tuple[list[Logical], dict[int, dict[int, int]], dict[str, Any]]:
    """One open-loop run of ``variant`` against the scripted ``phases``.

    Arrivals last ``duration`` seconds (default: the whole script).
    """
    if duration is None:
        duration = sum(float(p[0]) for p in phases)
    async with variant.open() as fetch:
        await fetch(upstream.url)  # warm a connection before the clock starts
        t0 = await upstream.script(phases, t0=time.monotonic() + 0.1, seed=seed)
        records = await open_loop(fetch, upstream.url, t0=t0, rate=rate, duration=duration)
        extra = variant.stats()
    counts = await upstream.stats()
    return records, counts, extra


def buckets_total(
    counts: dict[int, dict[int, int]], statuses: Iterable[int] | None = None
) -> dict[int, int]:
    """Upstream answers per bucket, summed over ``statuses`` (all by default)."""
    total: dict[int, int] = {}
    for status, buckets in counts.items():
        if statuses is not None and status not in statuses:
            continue
        for index, n in buckets.items():
            total[index] = total.get(index, 0) + n
    return total


def in_range(buckets: dict[int, int], start: float, end: float) -> list[int]:
    """Counts of the buckets covering [start, end) seconds, zeros included."""
    first, last = round(start / BUCKET), round(end / BUCKET)
    return [buckets.get(i, 0) for i in range(first, last)]


# --- reporting -------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "never"
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> dict[str, str]:
    """CPU model, cores, Python and library versions."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in ["seawall", "aiohttp", "aiohttp-retry", "tenacity", "stamina", "purgatory"]:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
    }


def emit(result: dict[str, Any], as_json: bool) -> None:
    """Print a scenario's result: its Markdown, or JSON for machines."""
    if as_json:
        print(json.dumps(result, default=str))
    else:
        print(result["markdown"])


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(sys.argv[2] if len(sys.argv) > 2 else "aiohttp"))
