"""``seawall_backoff``: wait as long as an ``X-RateLimit-Reset-After`` header says.

Some APIs (Discord's, for one) announce when their rate limit resets in a
header of their own rather than in ``Retry-After``. This plugin waits exactly
that long after a 429; for anything else it returns ``None`` and the policy's
built-in strategy decides. seawall clamps the answer to ``max_delay``.
"""

from __future__ import annotations

import asyncio
import math

import aiohttp
from aiohttp import web

import seawall
from seawall.events import Event, RetryScheduled


class RateLimitResetAfter:
    """After a 429, wait the seconds in ``X-RateLimit-Reset-After``."""

    @seawall.hookimpl
    def seawall_backoff(
        self, outcome: seawall.Outcome, classification: seawall.Classification
    ) -> float | None:
        if classification.category is not seawall.Category.RATE_LIMIT:
            return None
        raw = outcome.headers.get("X-RateLimit-Reset-After")
        try:
            seconds = float(raw) if raw is not None else math.nan
        except ValueError:
            return None  # malformed: fall back to the policy's backoff
        if not math.isfinite(seconds) or seconds < 0:
            return None
        return seconds


class RetryDelays:
    """Records the delay seawall chose before each retry."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    @seawall.hookimpl
    def seawall_event(self, event: Event) -> None:
        if isinstance(event, RetryScheduled):
            self.delays.append(event.delay)


async def main() -> list[float]:
    """One 429 with a reset header, then a 200; return the delays seawall chose."""
    hits: list[int] = []

    async def limited(_request: web.Request) -> web.Response:
        hits.append(1)
        if len(hits) == 1:
            return web.Response(status=429, headers={"X-RateLimit-Reset-After": "0.25"})
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", limited)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"

    delays = RetryDelays()
    sw = seawall.Seawall(plugins=[RateLimitResetAfter(), delays], entrypoints=False)
    try:
        async with (
            aiohttp.ClientSession(middlewares=[sw.middleware()]) as session,
            session.get(url) as resp,
        ):
            print(f"HTTP {resp.status} after {len(hits)} requests; waited {delays.delays} s")
    finally:
        await sw.aclose()
        await runner.cleanup()
    return delays.delays


if __name__ == "__main__":
    asyncio.run(main())
