"""Rate-limit scenario: 50 concurrent callers against an upstream allowing R requests/s.

The upstream (``seawall.fake_llm.FakeProvider``) is a token bucket that
answers 429 with ``retry-after-ms`` when over its rate; by default it sends no
``x-ratelimit-*`` headers (``--flavor openai`` adds them). ``--whole-seconds``
makes a 429 say only ``Retry-After`` in whole seconds, as many proxies in front
of LLM APIs do (seawall then learns the pace from what the upstream accepts
and refuses). The clients make the same calls, in interleaved rounds, each
against a fresh upstream:

- ``seawall``: ``Policy.for_llm()`` (shared, paced cooldown);
- ``naive``: bare aiohttp in a retry loop that retries a 429 after a fixed 50 ms;
- ``cookbook``: an aiohttp client middleware in the style of aiohttp's
  cookbook (retries 429/5xx with exponential backoff 0.1 s * 2^n, no jitter,
  ignores Retry-After), written here;
- ``bare`` (with ``--bare``): bare aiohttp, no retries: what the upstream
  gives whoever asks hardest (failed calls are its 429s).

Reports, as medians over the rounds: 429s per successful call (lower is
better), calls that failed, successes per second and as a share of the
upstream's rate (over the whole run, and from ``--settle`` seconds on: the
steady state after learning), and the peak 100 ms of upstream calls over the
median 100 ms after the first second (a herd after a cooldown shows here).

    python benchmarks/ratelimit.py [--rounds 3] [--rate 250] [--burst 25] [--calls 20]
    python benchmarks/ratelimit.py --rate 200 --burst 5 --calls 120 --whole-seconds --settle 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from multiprocessing.connection import Connection
from types import SimpleNamespace

import aiohttp

import seawall
from seawall.fake_llm import FakeProvider

CALLERS = 50
PATH = "/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": []}


class CookbookRetry:
    """A retry middleware as the aiohttp cookbook shows it: status-based, exponential."""

    def __init__(self, attempts: int = 10, base: float = 0.1) -> None:
        self.attempts = attempts
        self.base = base

    async def __call__(
        self, req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        for attempt in range(self.attempts):
            resp = await handler(req)
            if resp.status not in (429, 500, 502, 503, 504) or attempt == self.attempts - 1:
                return resp
            resp.release()
            await asyncio.sleep(self.base * 2**attempt)
        raise AssertionError("unreachable")


Call = Callable[[aiohttp.ClientSession, str], Awaitable[int]]


async def plain_call(session: aiohttp.ClientSession, url: str) -> int:
    async with session.post(url, json=BODY) as resp:
        await resp.read()
        return resp.status


async def naive_call(session: aiohttp.ClientSession, url: str) -> int:
    status = 0
    for _ in range(10):
        async with session.post(url, json=BODY) as resp:
            await resp.read()
            status = resp.status
        if status != 429:
            return status
        await asyncio.sleep(0.05)
    return status


def make_session(client: str, sends: list[float]) -> tuple[aiohttp.ClientSession, Call]:
    """The client's session and call; every request it sends is timed into ``sends``."""

    async def on_start(*_: object) -> None:
        sends.append(time.perf_counter())

    trace = aiohttp.TraceConfig(trace_config_ctx_factory=SimpleNamespace)
    trace.on_request_start.append(on_start)
    traced = [trace]
    if client == "seawall":
        policy = seawall.Policy.for_llm(
            retry={"max_attempts": 10, "retry_methods": ["POST"], "retry_after_max": 60}
        )
        sw = seawall.Seawall(routes={"127.0.0.1": policy}, entrypoints=False)
        return sw.session(trace_configs=traced), plain_call
    if client == "cookbook":
        cookbook = aiohttp.ClientSession(middlewares=(CookbookRetry(),), trace_configs=traced)
        return cookbook, plain_call
    if client == "bare":
        return aiohttp.ClientSession(trace_configs=traced), plain_call
    return aiohttp.ClientSession(trace_configs=traced), naive_call


def _fake(args: argparse.Namespace) -> FakeProvider:
    return FakeProvider(
        rate=args.rate, burst=args.burst, flavor=args.flavor, whole_seconds=args.whole_seconds
    )


def _serve(conn: Connection, args: argparse.Namespace) -> None:
    """The child process: run the upstream until told to stop, then send its counters."""

    async def serve() -> None:
        async with _fake(args) as fake:
            conn.send(fake.url)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, conn.recv)  # "stop"
            conn.send((fake.served, fake.rejected))

    asyncio.run(serve())


@contextlib.asynccontextmanager
async def upstream(args: argparse.Namespace) -> AsyncIterator[SimpleNamespace]:
    """The fake upstream, in a child process (its own event loop, as a real one has) or inline.

    Inline, the upstream's clock reads arrivals when the shared event loop gets to them:
    a busy client makes them look like bursts that it never sent.
    """
    if args.inline:
        async with _fake(args) as fake:
            view = SimpleNamespace(url=fake.url)
            yield view
            view.served, view.rejected = fake.served, fake.rejected
        return
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(target=_serve, args=(theirs, args))
    child.start()
    try:
        loop = asyncio.get_running_loop()
        view = SimpleNamespace(url=await loop.run_in_executor(None, ours.recv))
        yield view
        ours.send("stop")
        view.served, view.rejected = await loop.run_in_executor(None, ours.recv)
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()


def peak_ratio(sends: list[float], start: float, end: float) -> float:
    """The busiest 100 ms of sends in [start + 1 s, end) over the median 100 ms (0: too short)."""
    bins = [0] * max(0, math.floor((end - start - 1.0) / 0.1))
    for t in sends:
        at = math.floor((t - start - 1.0) / 0.1)
        if 0 <= at < len(bins):
            bins[at] += 1
    busy = sorted(b for b in bins if b)
    return max(busy) / statistics.median(busy) if len(busy) >= 5 else 0.0


async def one_run(client: str, args: argparse.Namespace) -> dict[str, float]:
    async with upstream(args) as fake:
        sends: list[float] = []
        oks: list[float] = []
        session, call = make_session(client, sends)
        url = fake.url + PATH

        async def caller() -> None:
            for _ in range(args.calls):
                if await call(session, url) == 200:
                    oks.append(time.perf_counter())

        started = time.perf_counter()
        async with session, asyncio.timeout(300):
            await asyncio.gather(*(caller() for _ in range(CALLERS)))
        ended = time.perf_counter()
    ok = len(oks)
    settled = [t for t in oks if t >= started + args.settle]
    steady = (
        len(settled) / (ended - started - args.settle) if ended - started > args.settle else 0.0
    )
    return {
        "429_per_success": fake.rejected / max(1, fake.served),
        "failed_calls": CALLERS * args.calls - ok,
        "successes_per_s": ok / (ended - started),
        "of_limit": ok / (ended - started) / args.rate,
        "steady_of_limit": steady / args.rate,
        "peak_100ms": peak_ratio(sends, started, ended),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=250.0, help="upstream requests/s")
    parser.add_argument("--burst", type=float, default=25.0, help="upstream bucket size")
    parser.add_argument("--calls", type=int, default=20, help="calls per caller")
    parser.add_argument("--flavor", default="none", choices=["none", "openai", "anthropic"])
    parser.add_argument(
        "--whole-seconds", action="store_true", help="429s say only Retry-After in whole seconds"
    )
    parser.add_argument(
        "--settle", type=float, default=0.0, help="seconds before the steady state is measured"
    )
    parser.add_argument("--bare", action="store_true", help="add bare aiohttp without retries")
    parser.add_argument(
        "--inline", action="store_true", help="run the upstream in this process's event loop"
    )
    parser.add_argument("--clients", default="", help="comma-separated subset of the clients")
    args = parser.parse_args()
    clients: tuple[str, ...] = ("seawall", "naive", "cookbook", "bare")
    if not args.bare:
        clients = clients[:3]
    if args.clients:
        clients = tuple(c for c in clients if c in args.clients.split(","))
    results: dict[str, list[dict[str, float]]] = {c: [] for c in clients}
    for number in range(args.rounds):
        turn = number % len(clients)
        for client in clients[turn:] + clients[:turn]:  # interleave, rotate the order
            results[client].append(await one_run(client, args))
    whole = ", Retry-After in whole seconds" if args.whole_seconds else ""
    print(
        f"{CALLERS} callers x {args.calls} calls, upstream {args.rate:g}/s burst {args.burst:g}, "
        f"headers: {args.flavor}{whole}; medians of {args.rounds} rounds"
    )
    print(
        f"{'client':<10} {'429s/success':>13} {'failed calls':>13} {'successes/s':>12} "
        f"{'of limit':>9} {f'after {args.settle:g}s':>10} {'peak/median 100ms':>18}"
    )
    for client in clients:
        runs = results[client]

        def med(name: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[name] for r in runs)

        print(
            f"{client:<10} {med('429_per_success'):>13.3f} {med('failed_calls'):>13.0f} "
            f"{med('successes_per_s'):>12.1f} {med('of_limit'):>9.0%} "
            f"{med('steady_of_limit'):>10.0%} {med('peak_100ms'):>18.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
