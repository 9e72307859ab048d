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
- ``bare``: bare aiohttp, no retries (a 429 is a failed request);
- ``fleet``: ``seawall`` in two member processes (half the arrivals each) sharing
  state through one real ``redis-server`` (``seawall.fleet``): the fleet's pace
  probes early when a member's callers crowd;
- ``fleet-held``: the same fleet without the fleet's early probe (a member never
  asks for one: the fleet's level is held, as before it).

``--never``: the limit never lifts (the whole run is ``--limited``): what early
probes cost on a standing limit. ``--backoff-max``: the longest wait between two
fleet probes that met the same limit (``EARLY_BACKOFF_MAX``).

Reports, per phase, as medians over the rounds: the share of requests that
succeeded, successes per second, and upstream 429s per success.

    python benchmarks/lift.py [--rounds 3] [--arrivals 80] [--limit 50] [--limited 20] [--quick]
    python benchmarks/lift.py --clients fleet,fleet-held --never --limited 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import math
import multiprocessing
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

import seawall
from seawall import learnt_pace
from seawall.errors import SeawallError
from seawall.fleet import Fleet, outbox
from seawall.fleet.pacing import FleetCooldown
from seawall.testing.fake_llm import FakeProvider

CLIENTS = ("seawall", "held", "bare", "fleet", "fleet-held")
#: Member processes of a ``fleet`` client.
MEMBERS = 2
PATH = "/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": []}


#: Seconds a child process may outlive its run's phases before it dumps every thread's
#: stack to stderr and exits (a stuck child must not hang the run, nor outlive it).
CHILD_SLACK = 30.0


def _watch(seconds: float) -> None:
    """In this process: after ``seconds``, print every thread's stack and exit."""
    faulthandler.dump_traceback_later(seconds, exit=True)


def _serve(conn: Connection, limit: float, lift_after: float, bound: float) -> None:
    """The child process: the bucket until ``lift_after`` s after "go", then no limit."""
    _watch(bound)

    async def serve() -> None:
        async with FakeProvider(rate=limit, burst=5, flavor="none", whole_seconds=True) as fake:
            conn.send(fake.url)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, conn.recv)  # "go"
            stop = loop.run_in_executor(None, conn.recv)  # "stop"
            done, _ = await asyncio.wait({stop}, timeout=lift_after)
            before = fake.rejected
            if not done:
                fake.rate = None  # the limit lifts
                await stop
            conn.send((before, fake.rejected - before))

    asyncio.run(serve())


@contextlib.asynccontextmanager
async def upstream(
    limit: float, lift_after: float, bound: float
) -> AsyncIterator[tuple[str, Connection]]:
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(theirs, limit, lift_after, bound)
    )
    child.start()
    theirs.close()  # the child's end: if it dies, our recv ends (EOFError), not hangs
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


def make_session(client: str, deadline: float, state: Fleet | None = None) -> aiohttp.ClientSession:
    if client == "bare":
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=deadline))
    policy = seawall.Policy.for_llm(
        retry={"max_attempts": 10, "retry_methods": ["POST"], "retry_after_max": 60},
        timeout=seawall.TimeoutPolicy(attempt=deadline, deadline=deadline),
    )
    sw = seawall.Seawall(routes={"127.0.0.1": policy}, entrypoints=False, state=state)
    return sw.session()


async def arrive(
    session: aiohttp.ClientSession,
    url: str,
    started: float,
    arrivals: float,
    args: argparse.Namespace,
    offset: float = 0.0,
) -> dict[str, list[bool]]:
    """Open loop from ``started`` (monotonic): ``arrivals`` per second, the first ``offset``
    of a gap late; each request's outcome, by phase."""
    outcomes: dict[str, list[bool]] = {"limited": [], "lifted": []}

    async def one(phase: str) -> None:
        ok = False
        try:
            async with session.post(url + PATH, json=BODY) as resp:
                await resp.read()
                ok = resp.status == 200
        except (SeawallError, aiohttp.ClientError, TimeoutError):
            pass
        outcomes[phase].append(ok)

    total = args.limited + args.lifted
    tasks: list[asyncio.Task[None]] = []
    for n in range(math.ceil(total * arrivals)):
        at = started + (n + offset) / arrivals
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        phase = "limited" if at - started < args.limited else "lifted"
        tasks.append(asyncio.create_task(one(phase)))
    async with asyncio.timeout(args.deadline + 30):
        await asyncio.gather(*tasks)
    return outcomes


def _member(conn: Connection, cfg: dict[str, Any]) -> None:
    """A ``fleet`` member process: its half of the arrivals, paced through Redis."""
    args = argparse.Namespace(**cfg["args"])
    _watch(cfg["bound"])
    outbox.EARLY_BACKOFF_MAX = args.backoff_max
    if not cfg["probe"]:  # ``fleet-held``: members never ask for the fleet's early probe
        FleetCooldown._crowded = lambda self, now: None  # type: ignore[method-assign]

    async def run() -> dict[str, list[bool]]:
        state = Fleet(cfg["redis"], prefix=cfg["prefix"])
        async with make_session("fleet", args.deadline, state) as session:
            conn.send("ready")
            started = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            return await arrive(
                session, cfg["url"], started, args.arrivals / MEMBERS, args, cfg["offset"]
            )

    conn.send(asyncio.run(run()))


def _child_bound(args: argparse.Namespace) -> float:
    """Seconds a child process of one run may take at most (``CHILD_SLACK`` past its phases)."""
    return float(args.limited + args.lifted) + CHILD_SLACK


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A ``redis-server`` of the run's own on 127.0.0.1 (no persistence): its URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = _free_port()
    scratch = tempfile.mkdtemp(prefix="seawall-redis-")  # (no file lands in the caller's folder)
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--loglevel", "warning", "--dir", scratch]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=scratch,
    )
    try:
        for _ in range(500):  # bounded: until it accepts connections
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(10)
        shutil.rmtree(scratch, ignore_errors=True)


async def fleet_run(
    client: str, args: argparse.Namespace, url: str, redis: str, conn: Connection
) -> dict[str, list[bool]]:
    """``MEMBERS`` processes share the arrivals and the key's state through ``redis``."""
    ctx = multiprocessing.get_context("spawn")
    prefix = f"lift{uuid.uuid4().hex[:8]}"
    pipes, procs = [], []
    for i in range(MEMBERS):
        ours, theirs = ctx.Pipe()
        cfg = {
            "args": vars(args),
            "redis": redis,
            "prefix": prefix,
            "url": url,
            "probe": client == "fleet",
            "offset": i / MEMBERS,  # the members' arrivals interleave
            "bound": _child_bound(args),
        }
        proc = ctx.Process(target=_member, args=(theirs, cfg))
        proc.start()
        theirs.close()  # the member's end: if it dies, our recv ends (EOFError), not hangs
        pipes.append(ours)
        procs.append(proc)
    loop = asyncio.get_running_loop()
    try:
        for pipe in pipes:
            assert await loop.run_in_executor(None, pipe.recv) == "ready"
        started = time.monotonic() + 0.1
        conn.send("go")
        for pipe in pipes:
            pipe.send(started)
        outcomes: dict[str, list[bool]] = {"limited": [], "lifted": []}
        for pipe in pipes:
            got = await loop.run_in_executor(None, pipe.recv)
            for phase, done in got.items():
                outcomes[phase] += done
        return outcomes
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


async def one_run(client: str, args: argparse.Namespace, redis: str) -> dict[str, float]:
    lift_after = math.inf if args.never else args.limited
    async with upstream(args.limit, lift_after, _child_bound(args)) as (url, conn):
        if client.startswith("fleet"):
            outcomes = await fleet_run(client, args, url, redis, conn)
        else:
            async with make_session(client, args.deadline) as session:
                with early_probes(client != "held"):
                    conn.send("go")
                    outcomes = await arrive(session, url, time.monotonic(), args.arrivals, args)
        conn.send("stop")
        refused = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    row: dict[str, float] = {}
    for (phase, seconds), count in zip(
        (("limited", args.limited), ("lifted", args.lifted)), refused, strict=True
    ):
        done = outcomes[phase]
        ok = sum(done)
        row[f"{phase} success"] = ok / len(done) if done else 0.0
        row[f"{phase} per s"] = ok / seconds if seconds else 0.0
        row[f"{phase} 429s"] = count / ok if ok else (0.0 if not count else math.inf)
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
    parser.add_argument("--never", action="store_true", help="the limit never lifts")
    parser.add_argument(
        "--backoff-max",
        type=float,
        default=outbox.EARLY_BACKOFF_MAX,
        help="fleet: longest wait between two early probes that met the same limit",
    )
    parser.add_argument("--quick", action="store_true", help="tiny run: proves it works")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.limited, args.lifted = 1, 3.0, 2.0
    if args.never:
        args.lifted = 0.0
    clients = [c for c in args.clients.split(",") if c]
    unknown = set(clients) - set(CLIENTS)
    if unknown:
        parser.error(f"unknown clients {sorted(unknown)}; choose from {', '.join(CLIENTS)}")
    runs: dict[str, list[dict[str, float]]] = {c: [] for c in clients}
    # A stuck run prints where every thread of this process waits, and exits (bounded).
    _watch(args.rounds * len(clients) * (_child_bound(args) + 10.0))
    with redis_server() as redis:
        for r in range(args.rounds):
            for client in clients[r % len(clients) :] + clients[: r % len(clients)]:
                runs[client].append(await one_run(client, args, redis))
    lift = (
        f"never lifted ({args.limited:g} s)"
        if args.never
        else f"lifted after {args.limited:g} s for {args.lifted:g} s"
    )
    print(
        f"open loop {args.arrivals:g}/s, deadline {args.deadline:g} s; upstream {args.limit:g}/s "
        f"burst 5, Retry-After in whole seconds, no rate headers, {lift}; "
        f"medians of {args.rounds} rounds"
        + (
            f"; fleet backoff max {args.backoff_max:g} s"
            if any("fleet" in c for c in clients)
            else ""
        )
    )
    print(
        f"{'client':10}  {'limited: ok':>11}  {'per s':>6}  {'429s/ok':>7}"
        f"  {'lifted: ok':>10}  {'per s':>6}  {'429s/ok':>7}"
    )
    for client in clients:

        def med(key: str, rows: list[dict[str, float]] = runs[client]) -> float:
            return statistics.median(row[key] for row in rows)

        print(
            f"{client:10}  {med('limited success'):>11.1%}  {med('limited per s'):>6.1f}"
            f"  {med('limited 429s'):>7.3f}  {med('lifted success'):>10.1%}"
            f"  {med('lifted per s'):>6.1f}  {med('lifted 429s'):>7.3f}"
        )
    print("each round (limited: per s, 429s/ok; lifted: ok):")
    for client in clients:
        rounds = "  ".join(
            f"{row['limited per s']:.1f} {row['limited 429s']:.3f} {row['lifted success']:.1%}"
            for row in runs[client]
        )
        print(f"  {client:10}  {rounds}")


if __name__ == "__main__":
    asyncio.run(main())
