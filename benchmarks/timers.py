"""How close to their limits seawall's timers fire on a real event loop.

Moved here from the unit tests (``test_watchdog.py``, ``test_deadline.py``),
which must not assert wall-clock thresholds; the unit tests check the
timers' logic on a loop clock they move by hand. Here the clock is real:
``--calls`` hung calls at once, each cut by one mechanism, and how late
(positive) or early (negative) each was cut, in milliseconds:

- ``watchdog``: an attempt limit of ``watchdog.MIN_LIMIT`` (1 s; the shared
  sweeping timer, allowed to be up to ``GRAIN`` early, never late);
- ``asyncio.timeout``: an attempt limit of 0.2 s (below ``MIN_LIMIT``);
- ``deadline``: ``seawall.deadline(0.2)`` around the call.

Target: every cut within 50 ms after its limit on an idle machine (the old
unit test's slack), the watchdog at most ``GRAIN`` early.

    python benchmarks/timers.py [--calls 50] [--quick] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Awaitable, Callable

import seawall
from seawall import watchdog

TARGET_LATE_MS = 50.0


def _sw(attempt: float | None) -> seawall.Seawall:
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        timeout=seawall.TimeoutPolicy(attempt=attempt, deadline=None),
        breaker=seawall.BreakerPolicy(enabled=False),
        budget=seawall.BudgetPolicy(enabled=False),
    )
    return seawall.Seawall(policy, entrypoints=False)


async def _cut(call: Callable[[], Awaitable[object]], limit: float) -> float:
    """Milliseconds between ``limit`` and when ``call`` ended with a timeout."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await asyncio.wait_for(call(), limit + 30)  # a hang guard, far beyond any target
    except (TimeoutError, seawall.DeadlineExceededError):
        return (loop.time() - started - limit) * 1000
    raise SystemExit("the hung call ended without a timeout")


async def _scenario(name: str, calls: int) -> list[float]:
    never = asyncio.Event()
    if name == "deadline":
        sw, limit = _sw(None), 0.2

        async def one() -> object:
            with seawall.deadline(limit):
                return await sw.call(never.wait, key=name)

    else:
        limit = watchdog.MIN_LIMIT if name == "watchdog" else 0.2
        sw = _sw(limit)

        async def one() -> object:
            return await sw.call(never.wait, key=name)

    return list(await asyncio.gather(*(_cut(one, limit) for _ in range(calls))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50, help="hung calls per mechanism")
    parser.add_argument("--quick", action="store_true", help="5 calls: proves it runs")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    seawall.testing.set_testing(False)
    calls = 5 if args.quick else args.calls
    missed = False
    print(f"{'timer':<16} {'calls':>5} {'median ms':>10} {'max ms':>8} {'min ms':>8}  target")
    for name in ("watchdog", "asyncio.timeout", "deadline"):
        late = asyncio.run(_scenario(name, calls))
        floor = -watchdog.GRAIN * 1000 if name == "watchdog" else 0.0
        ok = max(late) <= TARGET_LATE_MS and min(late) >= floor - 1.0
        missed |= not ok
        print(
            f"{name:<16} {calls:>5} {statistics.median(late):>10.1f} {max(late):>8.1f} "
            f"{min(late):>8.1f}  {'ok' if ok else 'MISSED'}"
        )
    print(
        f"target: cut at most {TARGET_LATE_MS:.0f} ms late; the watchdog at most "
        f"{watchdog.GRAIN * 1000:.0f} ms early, the others never early"
    )
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
