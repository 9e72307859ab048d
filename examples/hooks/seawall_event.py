"""``seawall_event``: count what seawall does, per key and kind.

A minimal metrics exporter: every event bumps a counter; a real exporter
would hand these to Prometheus or OpenTelemetry. The hook runs on the
request path, so it only does cheap, non-blocking work.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import seawall
from seawall.events import (
    AttemptFinished,
    BreakerTransition,
    CallFinished,
    Event,
    Rejected,
    RetryScheduled,
)


class EventCounter:
    """Counts events by ``(key, kind, detail)``; detail is the category, state or reason."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()

    @seawall.hookimpl
    def seawall_event(self, event: Event) -> None:
        detail = ""
        if isinstance(event, AttemptFinished | RetryScheduled):
            detail = event.category
        elif isinstance(event, BreakerTransition):
            detail = f"{event.old}->{event.new}"
        elif isinstance(event, Rejected):
            detail = event.reason
        elif isinstance(event, CallFinished):
            detail = event.outcome
        self.counts[(event.key, event.kind, detail)] += 1


async def main() -> Counter[tuple[str, str, str]]:
    """A call that fails once with a timeout, then works; return the counters."""
    failures = [TimeoutError("read timed out")]

    async def lookup(user_id: int) -> dict[str, int]:
        if failures:
            raise failures.pop()
        return {"id": user_id}

    counter = EventCounter()
    policy = seawall.Policy(retry=seawall.RetryPolicy(base_delay=0.01, max_delay=0.05))
    sw = seawall.Seawall(policy, plugins=[counter], entrypoints=False)
    try:
        print(await sw.call(lookup, 7, key="users"))
    finally:
        await sw.aclose()
    for (key, kind, detail), count in sorted(counter.counts.items()):
        print(f"{key} {kind} {detail}: {count}")
    return counter.counts


if __name__ == "__main__":
    asyncio.run(main())
