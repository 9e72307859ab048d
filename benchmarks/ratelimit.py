"""Rate-limit scenario: 50 concurrent callers against an upstream allowing R requests/s.

The upstream (``seawall.fake_llm.FakeProvider``) is a token bucket that
answers 429 with ``retry-after-ms`` when over its rate; by default it sends no
``x-ratelimit-*`` headers (``--flavor openai`` adds them). Three clients make
the same calls, in interleaved rounds, each against a fresh upstream:

- ``seawall``: ``Policy.for_llm()`` (shared, paced cooldown);
- ``naive``: a retry loop that retries a 429 after a fixed 50 ms;
- ``cookbook``: an aiohttp client middleware in the style of aiohttp's
  cookbook (retries 429/5xx with exponential backoff 0.1 s * 2^n, no jitter,
  ignores Retry-After), written here.

Reports 429s per successful call (lower is better), calls that failed and
throughput, as medians over the rounds.

    python benchmarks/ratelimit.py [--rounds 3] [--rate 250] [--burst 25] [--calls 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

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


def make_session(client: str) -> tuple[aiohttp.ClientSession, Call]:
    if client == "seawall":
        policy = seawall.Policy.for_llm(
            retry=seawall.RetryPolicy(max_attempts=10, retry_methods=["POST"], retry_after_max=60)
        )
        sw = seawall.Seawall(routes={"127.0.0.1": policy}, entrypoints=False)
        return sw.session(), plain_call
    if client == "cookbook":
        return aiohttp.ClientSession(middlewares=(CookbookRetry(),)), plain_call
    return aiohttp.ClientSession(), naive_call


async def one_run(client: str, args: argparse.Namespace) -> dict[str, float]:
    async with FakeProvider(rate=args.rate, burst=args.burst, flavor=args.flavor) as fake:
        session, call = make_session(client)
        ok = 0
        url = fake.url + PATH

        async def caller() -> None:
            nonlocal ok
            for _ in range(args.calls):
                status = await call(session, url)  # not `ok += await ...`: that loses updates
                ok += status == 200

        started = time.perf_counter()
        async with session, asyncio.timeout(120):
            await asyncio.gather(*(caller() for _ in range(CALLERS)))
        elapsed = time.perf_counter() - started
    return {
        "429_per_success": fake.rejected / max(1, fake.served),
        "failed_calls": CALLERS * args.calls - ok,
        "successes_per_s": ok / elapsed,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=250.0, help="upstream requests/s")
    parser.add_argument("--burst", type=float, default=25.0, help="upstream bucket size")
    parser.add_argument("--calls", type=int, default=20, help="calls per caller")
    parser.add_argument("--flavor", default="none", choices=["none", "openai", "anthropic"])
    args = parser.parse_args()
    clients = ("seawall", "naive", "cookbook")
    results: dict[str, list[dict[str, float]]] = {c: [] for c in clients}
    for number in range(args.rounds):
        order = clients[number % 3 :] + clients[: number % 3]  # interleave, rotate the order
        for client in order:
            results[client].append(await one_run(client, args))
    print(
        f"{CALLERS} callers x {args.calls} calls, upstream {args.rate:g}/s burst {args.burst:g}, "
        f"headers: {args.flavor}; medians of {args.rounds} rounds"
    )
    print(f"{'client':<10} {'429s/success':>13} {'failed calls':>13} {'successes/s':>12}")
    for client in clients:
        runs = results[client]

        def med(name: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[name] for r in runs)

        print(
            f"{client:<10} {med('429_per_success'):>13.3f} {med('failed_calls'):>13.0f} "
            f"{med('successes_per_s'):>12.1f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
