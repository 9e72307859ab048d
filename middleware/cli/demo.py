"""``seawall demo``: a naive retry loop and seawall, side by side, on a failing upstream.

Two scripted upstreams (``seawall.cli.demo_upstream``) follow the same phases at
the same time; each gets the same open-loop load (every client starts a
logical request every ``1/rate`` seconds, however slow the upstream is). One
is called by a naive loop that retries every failure after a tiny fixed
delay, the other through seawall with short policies suited to a demo. The
numbers are computed from what the upstreams saw (``seawall.cli.demo_stats``).
Everything is bounded: the run stops by itself after about ``duration``
seconds plus the longest call.

``simulated=True`` runs the same scenario on simulated time
(``seawall.cli.demo_clock``): the sockets are real, waiting is free, and the
numbers do not depend on the machine's load. The tests use it; ``make demo``
runs in real time.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import aiohttp
import attrs

from seawall import backoff, breaker
from seawall.cli.demo_clock import SimulatedLoop
from seawall.cli.demo_upstream import (
    REQUEST,
    START,
    Phase,
    ScriptedUpstream,
    phase_at,
    script,
)
from seawall.engine import Seawall
from seawall.errors import SeawallError
from seawall.events import BreakerTransition
from seawall.plugins import hookimpl
from seawall.policy import BreakerPolicy, BudgetPolicy, Policy, RetryPolicy, TimeoutPolicy

__all__ = ["DemoConfig", "Progress", "Variant", "demo_policy", "held", "run", "run_demo"]

#: The variants, in display order.
VARIANTS = ("naive", "seawall")


@attrs.frozen(kw_only=True)
class DemoConfig:
    """What ``seawall demo`` runs: seconds, clients, requests per second per client."""

    duration: float = 20.0
    clients: int = 8
    rate: float = 10.0
    seed: int = 1
    naive_attempts: int = 6
    naive_delay: float = 0.02
    #: Share of the offered load the upstream accepts while rate-limited.
    rate_limit_share: float = 0.6
    #: Run on simulated time (``seawall.cli.demo_clock``) instead of real time.
    simulated: bool = False

    @property
    def scale(self) -> float:
        """The run's length against the 20 s default; every short wait follows it."""
        return self.duration / 20.0


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def demo_policy(config: DemoConfig) -> Policy:
    """Short policies for a demo of ``config.duration`` seconds.

    Retries: as many attempts as the naive loop (``naive_attempts``), so the
    two sides compare like with like: with 4 against 6 the 30 %-errors row
    measured the attempt count (0.3**4 = 0.8 % of calls fail all attempts,
    0.3**6 = 0.07 %), not seawall. seawall's retry budget (half a retry per
    request) still bounds its load where the naive loop's is unbounded; it can
    refuse a retry in a burst of errors, which the naive loop never does.
    The breaker trips on 8 failed calls in a row (each after its retries), a
    run of 8 failed attempts, or a failure rate of 0.6 over 50; it probes
    after a recovery timeout of 5 % of the run (1 s of 20), sooner under load
    (``probe_share``). A run of 8 failed attempts at 30 % random errors
    happens in about 1.5 % of runs (336 attempts in that phase, each starting
    such a run with probability 0.7 * 0.3**8); it is the price of a trip that
    costs 8 calls rather than 20 on a dead upstream, which keeps the outage's
    load at 0.05 of steady with the probes.
    """
    s = config.scale
    return Policy(
        retry=RetryPolicy(
            max_attempts=config.naive_attempts,
            base_delay=_clamp(0.05 * s, 0.005, 0.05),
            max_delay=_clamp(0.5 * s, 0.05, 0.5),
            retry_after_max=10.0,
        ),
        breaker=BreakerPolicy(
            failure_threshold=8,
            failure_rate=0.6,
            window=50,
            minimum_calls=8,
            recovery_timeout=_clamp(1.0 * s, 0.1, 2.0),
        ),
        timeout=TimeoutPolicy(attempt=1.0, deadline=_clamp(2.0 * s, 0.5, 2.0)),
        budget=BudgetPolicy(ratio=0.5, min_retries_per_second=5.0, window=_clamp(5 * s, 1, 5)),
    )


class Variant:
    """What one side of the demo did: its logical requests and its upstream."""

    def __init__(self, name: str, upstream: ScriptedUpstream) -> None:
        self.name = name
        self.upstream = upstream
        self.requests: list[tuple[float, float, bool]] = []  # (start, end, ok) in run seconds
        self.started = 0
        self.transitions: list[tuple[float, str, str]] = []  # (t, old, new)
        self.active = 0  # logical requests started and not ended
        #: (t, callers inside a call, callers held by the breaker or ``None`` when not reported)
        self.waiting: list[tuple[float, int, int | None]] = []
        #: The most the event loop fell behind a sample's due time (both sides share it), s.
        self.lag = 0.0

    @property
    def breaker(self) -> str:
        return self.transitions[-1][2] if self.transitions else "closed"


class _BreakerRecorder:
    """A ``seawall_event`` plugin that records breaker transitions with run times."""

    def __init__(self, variant: Variant, now: Callable[[], float]) -> None:
        self.variant = variant
        self.now = now

    @hookimpl
    def seawall_event(self, event: object) -> None:
        if isinstance(event, BreakerTransition):
            self.variant.transitions.append((self.now(), event.old, event.new))


@attrs.frozen
class Progress:
    """A snapshot for the live display."""

    elapsed: float
    duration: float
    phase: Phase | None
    variants: tuple[Variant, ...]


async def _naive_send(
    session: aiohttp.ClientSession, url: str, config: DemoConfig, start: str, request: str
) -> bool:
    """The loop people write: retry any failure after a tiny fixed delay, a few times."""
    headers = {START: start, REQUEST: request}
    for number in range(1, config.naive_attempts + 1):
        try:
            async with session.get(url, headers=headers) as resp:
                await resp.read()
                if resp.status < 400:
                    return True
        except (aiohttp.ClientError, TimeoutError):
            pass
        if number < config.naive_attempts:
            await asyncio.sleep(config.naive_delay)
    return False


async def _seawall_send(session: aiohttp.ClientSession, url: str, start: str, request: str) -> bool:
    try:
        async with session.get(url, headers={START: start, REQUEST: request}) as resp:
            await resp.read()
            return resp.status < 400
    except (aiohttp.ClientError, TimeoutError, SeawallError):
        return False


async def _drive(
    variant: Variant,
    send: Callable[[str, str], Awaitable[bool]],
    config: DemoConfig,
    t0: float,
    offsets: list[float],
) -> None:
    """Open-loop load: each client starts a request every ``1/rate`` s, whatever happens.

    Client ``n`` starts its requests ``offsets[n]`` seconds into each period; both
    sides get the same offsets, and each request is named by its client and
    number (``REQUEST``), so the scripted errors follow the request on both.
    """
    loop = asyncio.get_running_loop()
    period = 1.0 / config.rate
    count = int(config.duration * config.rate)
    tasks: list[asyncio.Task[None]] = []

    async def one(request: str) -> None:
        start = loop.time() - t0
        variant.active += 1
        ok = False
        try:
            ok = await send(f"{start:.6f}", request)  # the upstream counts calls by start
        finally:  # a request still running when the run is cut off counts as failed
            variant.active -= 1
            variant.requests.append((start, loop.time() - t0, ok))

    async def client(number: int, offset: float) -> None:
        for k in range(count):
            wait = t0 + offset + k * period - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            variant.started += 1
            tasks.append(asyncio.create_task(one(f"{number}.{k}")))

    try:
        await asyncio.gather(*(client(n, offset) for n, offset in enumerate(offsets)))
        # Every call is bounded (naive: attempts x 1 s timeout; seawall: its deadline).
        limit = config.naive_attempts * (1.0 + config.naive_delay) + 1.0
        if tasks:
            await asyncio.wait(tasks, timeout=limit)
    finally:
        # Cut off (past the bound, or Ctrl-C): the requests still running are cancelled
        # and awaited here, before the sessions close under them ("Session is closed").
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)


async def run_demo(
    config: DemoConfig, on_tick: Callable[[Progress], None] | None = None, tick: float = 0.25
) -> tuple[Variant, ...]:
    """Run both variants side by side; call ``on_tick`` every ``tick`` seconds."""
    backoff.seed(config.seed)
    breaker.seed(config.seed)  # the recovery timeouts and probe intervals are jittered too
    rng = random.Random(config.seed)
    # Both sides: the same clients, starting at the same moments of each period.
    offsets = [rng.uniform(0.0, 1.0 / config.rate) for _ in range(config.clients)]
    phases = script(config.duration)
    offered = config.clients * config.rate
    window = round(_clamp(1.0 * config.scale, 0.1, 1.0), 2)
    variants = tuple(
        Variant(
            name,
            ScriptedUpstream(
                phases,
                seed=config.seed,  # one seed: both sides draw the same errors
                limit=offered * config.rate_limit_share,
                window=window,
            ),
        )
        for name in VARIANTS
    )
    naive, guarded = variants
    policy = demo_policy(config)
    # The naive loop's attempts end after seawall's attempt limit too (like for like).
    naive_timeout = aiohttp.ClientTimeout(total=policy.timeout.attempt)
    loop = asyncio.get_running_loop()
    urls = [await v.upstream.serve() for v in variants]
    t0 = loop.time() + 0.1
    # On simulated time every clock seawall reads must be the loop's.
    sw = Seawall(policy, entrypoints=False, clock=loop.time if config.simulated else None)
    sw.register(_BreakerRecorder(guarded, lambda: loop.time() - t0), name="demo.recorder")
    try:
        async with (
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=500), timeout=naive_timeout
            ) as plain,
            sw.session(connector=aiohttp.TCPConnector(limit=500)) as protected,
        ):
            for variant in variants:
                variant.upstream.start(t0)
            run = asyncio.gather(
                _drive(naive, partial(_naive_send, plain, urls[0], config), config, t0, offsets),
                _drive(guarded, partial(_seawall_send, protected, urls[1]), config, t0, offsets),
            )
            sampler = asyncio.create_task(_sample(sw, variants, config, t0))
            try:
                await _watch(run, config, phases, variants, t0, on_tick, tick)
            finally:
                sampler.cancel()
    finally:
        for variant in variants:
            await variant.upstream.close()
        await sw.aclose()
    return variants


#: Seconds between samples of the callers waiting inside each variant.
SAMPLE = 0.05


def held(sw: Seawall) -> int | None:
    """Callers the breakers hold for a probe's verdict, when ``health()`` reports it.

    Reads ``held`` from each key's report; ``None`` when no key reports it
    (a seawall without the breaker's hold), so the demo shows what exists.
    """
    counts = [r.get("held") for r in sw.health().by_key.values()]
    numbers = [c for c in counts if isinstance(c, int)]
    return sum(numbers) if numbers else None


async def _sample(
    sw: Seawall, variants: tuple[Variant, ...], config: DemoConfig, t0: float
) -> None:
    """Record the callers inside each variant every ``SAMPLE`` s (bounded by the run's length)."""
    loop = asyncio.get_running_loop()
    due = loop.time()
    for _ in range(int((config.duration + 60.0) / SAMPLE)):
        now = loop.time() - t0
        late = loop.time() - due  # a busy host: the loop runs every callback late
        if now >= 0:
            for variant in variants:
                count = held(sw) if variant.name == "seawall" else None
                variant.waiting.append((now, variant.active, count))
                variant.lag = max(variant.lag, late)
        due = loop.time() + SAMPLE
        await asyncio.sleep(SAMPLE)


def run(
    config: DemoConfig, on_tick: Callable[[Progress], None] | None = None, tick: float = 0.25
) -> tuple[Variant, ...]:
    """``run_demo`` on a fresh event loop: a ``SimulatedLoop`` when ``config.simulated``."""
    factory = SimulatedLoop if config.simulated else None
    main = run_demo(config, on_tick, tick)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    finally:
        # Ctrl-C as the demo starts can land before the runner took ``main``:
        # close it, or Python warns "coroutine 'run_demo' was never awaited" at exit.
        # Once taken, the runner ran it to its end (done or cancelled): close is a no-op.
        main.close()


async def _watch(
    run: Awaitable[Any],
    config: DemoConfig,
    phases: tuple[Phase, ...],
    variants: tuple[Variant, ...],
    t0: float,
    on_tick: Callable[[Progress], None] | None,
    tick: float,
) -> None:
    """Await ``run``, reporting progress meanwhile (bounded by the run's own bound)."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(run)
    ticks = int((config.duration + 60.0) / tick)
    try:
        for _ in range(ticks):
            done, _pending = await asyncio.wait({task}, timeout=tick)
            if on_tick is not None:
                elapsed = loop.time() - t0
                on_tick(Progress(elapsed, config.duration, phase_at(phases, elapsed), variants))
            if done:
                break
        await task
    finally:
        # Ctrl-C cancels this coroutine: the run is cancelled with it, and its end is
        # read when it comes. A cancelled gather ends holding a CancelledError; unread,
        # it is printed at exit ("_GatheringFuture exception was never retrieved")
        # after the demo's one line.
        task.cancel()
        task.add_done_callback(_read_end)
        # The drivers cancel their requests before the sessions close (bounded there).
        await asyncio.wait({task}, timeout=2.0)


def _read_end(future: asyncio.Future[Any]) -> None:
    """Read how ``future`` ended, so nothing is printed about it at exit."""
    if not future.cancelled():
        future.exception()
