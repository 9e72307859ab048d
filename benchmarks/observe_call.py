"""What a key's counters and latency histogram cost per call (target: under 1 µs).

Moved here from the unit tests, which must not assert wall-clock thresholds.

    python benchmarks/observe_call.py [--calls N] [--quick] [--check]

Exits 1 on a missed target only with ``--check`` (``make bench`` reports it).
"""

from __future__ import annotations

import argparse
import sys
import time

from seawall.metrics import KeyStats

TARGET_NS = 1000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="1000 calls: proves it runs")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls = 1000
    stats = KeyStats()
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(args.calls):
            stats.observe_call(0.0123, i & 1 == 0)
        runs.append((time.perf_counter() - t0) / args.calls * 1e9)
    median = sorted(runs)[2]
    verdict = "ok" if median < TARGET_NS else "ABOVE TARGET"
    print(f"observe_call: median {median:.0f} ns per call (target < {TARGET_NS:.0f} ns): {verdict}")
    return 1 if args.check and median >= TARGET_NS else 0


if __name__ == "__main__":
    sys.exit(main())
