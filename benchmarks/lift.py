"""A rate limit that lifts under deadline pressure: open loop, whole-second ``Retry-After``.

Requests arrive at ``--arrivals`` per second (open loop: they do not wait for
each other) with a deadline of ``--deadline`` seconds each. The upstream
(``seawall.testing.fake_llm.FakeProvider`` in a child process) is a token
bucket of ``--limit`` requests per second (burst 5) that answers 429 with
only ``Retry-After`` in whole seconds and no rate headers; after
``--limited`` seconds it lifts its limit, and the run goes on ``--lifted``
seconds more. Clients, in interleaved rounds, each against a fresh upstream:

- ``seawall``: ``Policy.for_llm()`` with the deadline; a held level probes
  early when its callers crowd (``seawall.learnt_pace``);
- ``held``: the same, with ``EARLY_PROBE`` set to infinity: the level held
  for ``HOLD`` seconds after every cut, as before issue 16's eighth session;
- ``bare``: bare aiohttp, no retries (a 429 is a failed request).

Reports, per phase, as medians over the rounds: the share of requests that
succeeded, successes per second, and upstream 429s per success.

    python benchmarks/lift.py [--rounds 3] [--arrivals 80] [--limit 50] [--limited 20] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from multiprocessing.connection import Connection

import aiohttp

import seawall
from seawall import learnt_pace
from seawall.errors import SeawallError
from seawall.testing.fake_llm import FakeProvider

CLIENTS = ("seawall", "held", "bare")
PATH = "/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": []}


def _serve(conn: Connection, limit: float, lift_after: float) -> None:
    """The child process: the bucket until ``lift_after`` s after "go", then no limit."""

    async def serve() -> None:
        async with FakeProvider(rate=limit, burst=5, flavor="none", whole_seconds=True) as fake:
            conn.send(fake.url)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, conn.recv)  # "go"
            await asyncio.sleep(lift_after)
            before = fake.rejected
            fake.rate = None  # the limit lifts
            await loop.run_in_executor(None, conn.recv)  # "stop"
            conn.send((before, fake.rejected - before))

    asyncio.run(serve())


@contextlib.asynccontextmanager
async def upstream(limit: float, lift_after: float) -> AsyncIterator[tuple[str, Connection]]:
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(theirs, limit, lift_after)
    )
    child.start()
    try:
        url = await asyncio.get_running_loop().run_in_executor(None, ours.recv)
        yield url, ours
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()


@contextlib.contextmanager
def early_probes(on: bool) -> Iterator[None]:
    """``held``: the learnt pace without early probes (what the level did before them)."""
    kept = learnt_pace.EARLY_PROBE
    learnt_pace.EARLY_PROBE = kept if on else math.inf
    try:
        yield
    finally:
        learnt_pace.EARLY_PROBE = kept


def make_session(client: str, deadline: float) -> aiohttp.ClientSession:
    if client == "bare":
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=deadline))
    policy = seawall.Policy.for_llm(
        retry=seawall.RetryPolicy(max_attempts=10, retry_methods=["POST"], retry_after_max=60),
        timeout=seawall.TimeoutPolicy(attempt=deadline, deadline=deadline),
    )
    return seawall.Seawall(routes={"127.0.0.1": policy}, entrypoints=False).session()


async def one_run(client: str, args: argparse.Namespace) -> dict[str, float]:
    outcomes: dict[str, list[bool]] = {"limited": [], "lifted": []}

    async def one(session: aiohttp.ClientSession, url: str, phase: str) -> None:
        ok = False
        try:
            async with session.post(url + PATH, json=BODY) as resp:
                await resp.read()
                ok = resp.status == 200
        except (SeawallError, aiohttp.ClientError, TimeoutError):
            pass
        outcomes[phase].append(ok)

    total = args.limited + args.lifted
    async with (
        upstream(args.limit, args.limited) as (url, conn),
        make_session(client, args.deadline) as session,
    ):
        with early_probes(client != "held"):
            conn.send("go")
            started = time.monotonic()
            tasks: list[asyncio.Task[None]] = []
            for n in range(math.ceil(total * args.arrivals)):
                at = started + n / args.arrivals
                delay = at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                phase = "limited" if at - started < args.limited else "lifted"
                tasks.append(asyncio.create_task(one(session, url, phase)))
            async with asyncio.timeout(args.deadline + 30):
                await asyncio.gather(*tasks)
        conn.send("stop")
        refused = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    row: dict[str, float] = {}
    for (phase, seconds), count in zip(
        (("limited", args.limited), ("lifted", args.lifted)), refused, strict=True
    ):
        done = outcomes[phase]
        ok = sum(done)
        row[f"{phase} success"] = ok / len(done) if done else 0.0
        row[f"{phase} per s"] = ok / seconds
        row[f"{phase} 429s"] = count / ok if ok else math.inf
    return row


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--arrivals", type=float, default=80.0, help="requests per second")
    parser.add_argument("--limit", type=float, default=50.0, help="the bucket's rate")
    parser.add_argument("--limited", type=float, default=20.0, help="seconds before the lift")
    parser.add_argument("--lifted", type=float, default=10.0, help="seconds after it")
    parser.add_argument("--deadline", type=float, default=3.0)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--quick", action="store_true", help="tiny run: proves it works")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.limited, args.lifted = 1, 3.0, 2.0
    clients = [c for c in args.clients.split(",") if c]
    unknown = set(clients) - set(CLIENTS)
    if unknown:
        parser.error(f"unknown clients {sorted(unknown)}; choose from {', '.join(CLIENTS)}")
    runs: dict[str, list[dict[str, float]]] = {c: [] for c in clients}
    for r in range(args.rounds):
        for client in clients[r % len(clients) :] + clients[: r % len(clients)]:
            runs[client].append(await one_run(client, args))
    print(
        f"open loop {args.arrivals:g}/s, deadline {args.deadline:g} s; upstream {args.limit:g}/s "
        f"burst 5, Retry-After in whole seconds, no rate headers, lifted after "
        f"{args.limited:g} s for {args.lifted:g} s; medians of {args.rounds} rounds"
    )
    print(
        f"{'client':8}  {'limited: ok':>11}  {'per s':>6}  {'429s/ok':>7}"
        f"  {'lifted: ok':>10}  {'per s':>6}  {'429s/ok':>7}"
    )
    for client in clients:

        def med(key: str, rows: list[dict[str, float]] = runs[client]) -> float:
            return statistics.median(row[key] for row in rows)

        print(
            f"{client:8}  {med('limited success'):>11.1%}  {med('limited per s'):>6.1f}"
            f"  {med('limited 429s'):>7.3f}  {med('lifted success'):>10.1%}"
            f"  {med('lifted per s'):>6.1f}  {med('lifted 429s'):>7.3f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
