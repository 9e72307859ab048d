"""seawall in two seconds: a flaky upstream, retries, an open breaker, recovery.

Run it from the repository root after ``make demo`` (or any install)::

    python examples/quickstart.py

It starts a small upstream on 127.0.0.1 that goes through three phases:

1. flaky: every other request answers 503, so seawall retries and the caller
   only ever sees 200s;
2. outage: every request answers 503; each call gives up after its 3
   attempts, the breaker opens after 3 such failed calls in a row, and later
   requests fail fast with ``CircuitOpenError`` without reaching the upstream;
3. recovery: the upstream answers 200 again; after ``recovery_timeout`` (1 s)
   the breaker lets one probe through, which succeeds and closes it.

A ``seawall_event`` plugin prints every attempt, retry and breaker transition.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import web

import seawall
from seawall.events import (
    AttemptFinished,
    BreakerTransition,
    CallFinished,
    Event,
    Rejected,
    RetryScheduled,
)
from seawall.reports import HealthReport

#: The policy of the demo: short waits so that the whole run takes about 2 s.
POLICY = seawall.Policy(
    retry=seawall.RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.2),
    # hold=0: a call that meets the open breaker fails at once, so the tour shows
    # CircuitOpenError. The default (hold=0.25) would instead keep such a call
    # waiting for the next probe's verdict when it is near (about a second away
    # here, once the breaker has measured the request rate): see
    # docs/concepts/circuit-breaker.md.
    breaker=seawall.BreakerPolicy(failure_threshold=3, recovery_timeout=1.0, hold=0),
    timeout=seawall.TimeoutPolicy(attempt=2.0, deadline=5.0),
)


#: Plain words for ``CallFinished.stopped_because``.
STOP_REASONS = {
    "attempts": "max_attempts used up",
    "breaker": "the breaker is open",
    "budget": "the retry budget is spent",
    "deadline": "the next attempt would miss the deadline",
}


class Upstream:
    """A flaky HTTP service whose behaviour the demo switches phase by phase."""

    def __init__(self) -> None:
        self.phase = "flaky"
        self.hits = 0

    async def handle(self, _request: web.Request) -> web.Response:
        self.hits += 1
        if self.phase == "outage" or (self.phase == "flaky" and self.hits % 2 == 1):
            return web.Response(status=503, text="upstream is overloaded")
        return web.Response(text=f"hello #{self.hits}")


class PrintEvents:
    """A plugin that prints what seawall does, one line per event."""

    def __init__(self, started: float) -> None:
        self.started = started

    def say(self, text: str) -> None:
        print(f"  {time.monotonic() - self.started:5.2f}s  {text}", flush=True)

    @seawall.hookimpl
    def seawall_event(self, event: Event) -> None:
        if isinstance(event, AttemptFinished):
            result = event.status or event.exception
            self.say(f"attempt {event.attempt}: {result} ({event.category})")
        elif isinstance(event, RetryScheduled):
            self.say(f"retry in {event.delay * 1000:.0f} ms ({event.reason})")
        elif isinstance(event, BreakerTransition):
            why = f" after {event.consecutive_failures} failed calls in a row"
            self.say(f"breaker {event.old} -> {event.new}{why if event.new == 'open' else ''}")
        elif isinstance(event, CallFinished) and event.stopped_because:
            why = STOP_REASONS.get(event.stopped_because, event.stopped_because)
            self.say(f"no more retries: {why}")
        elif isinstance(event, Rejected):
            self.say(f"rejected without calling the upstream ({event.reason})")


async def fetch(session: aiohttp.ClientSession, url: str, say: PrintEvents) -> float:
    """One GET through seawall, printing its result or the error seawall raised.

    Returns the seconds until the breaker allows a probe (0 unless it is open).
    """
    try:
        async with session.get(url) as resp:
            say.say(f"=> caller got HTTP {resp.status}: {await resp.text()!r}")
    except seawall.CircuitOpenError as exc:
        say.say(f"=> caller got CircuitOpenError: probe allowed in {exc.retry_after:.2f}s")
        return exc.retry_after
    return 0.0


async def main() -> HealthReport:
    """Run the three phases against a local upstream; return ``sw.health()``."""
    upstream = Upstream()
    app = web.Application()
    app.router.add_get("/", upstream.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/"

    printer = PrintEvents(time.monotonic())
    sw = seawall.Seawall(POLICY, plugins=[printer], entrypoints=False)
    try:
        async with aiohttp.ClientSession(middlewares=[sw.middleware()]) as session:
            print(f"phase 1: flaky upstream at {url} (every other request is a 503)")
            for _ in range(2):
                await fetch(session, url, printer)

            print("phase 2: outage (every request is a 503)")
            upstream.phase = "outage"
            for _ in range(3):  # each gives up after 3 attempts; the third opens the breaker
                await fetch(session, url, printer)
            await fetch(session, url, printer)  # fails fast
            hits = upstream.hits
            wait = await fetch(session, url, printer)
            print(f"  (the upstream saw {upstream.hits - hits} requests from that last call)")

            print("phase 3: the upstream recovers")
            upstream.phase = "up"
            printer.say(f"waiting {wait:.2f}s for the breaker's recovery timeout")
            await asyncio.sleep(wait + 0.05)
            for _ in range(2):
                await fetch(session, url, printer)
    finally:
        await sw.aclose()
        await runner.cleanup()

    health = sw.health()
    print(f"health: {health['status']}")
    for key, detail in health["keys"].items():
        print(
            f"  {key}: breaker {detail['state']}, {detail['requests']} requests, "
            f"{detail['attempts']} attempts, {detail['retries']} retries, "
            f"rejections {detail['rejections']}, transitions {detail['transitions']}"
        )
    print(f"the upstream answered {upstream.hits} requests in all")
    return health


if __name__ == "__main__":
    asyncio.run(main())
