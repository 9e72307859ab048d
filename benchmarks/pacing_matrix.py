"""The learnt pace against standing token buckets, on a virtual clock (deterministic).

Issue 16 asks for fewer than 0.05 429s per success against an upstream that
says only ``Retry-After`` in whole seconds, "at no loss of throughput against
the upstream's limit". ``ratelimit.py`` and ``lift.py`` measure that in real
time for one or two buckets; this runs the cooldown's own code
(``tests/_pacing_sim.py``: callers, a ``Cooldown``, a token bucket, one
virtual clock) over a grid of buckets, small rates and bursts included, in
four ways of calling:

- ``closed``: 48 callers back to back;
- ``open``: requests arriving at 1.6x the bucket's rate, each refused when
  its turn would come more than 3 s later;
- ``jit``: the same with an event loop that wakes sleepers up to 5 ms late;
- ``stall``: 48 callers, the upstream's host stalling 80 ms every 3 s (rates
  of 50/s and more).

Each cell: the share of the bucket's rate served from 10 s to 60 s (after
learning), and 429s per success over the whole run (the first wave of the
closed loop included: 48 callers at once against the bucket).

    python benchmarks/pacing_matrix.py [--json]

No wall clock and no randomness beyond a fixed seed: the same numbers every
run, on any machine; a few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tests"))

from _pacing_sim import simulate  # the tests' simulation, on their path

#: (rate per second, burst) of the buckets: issue 16's 200/5, LLM-like small rates
#: (3,000 and 500 requests a minute are 50/s and about 8/s), burst-free and bursty ones.
BUCKETS = [
    (50, 5),
    (10, 5),
    (8, 1),
    (5, 2),
    (20, 1),
    (20, 5),
    (50, 1),
    (200, 5),
    (100, 10),
    (40, 40),
    (200, 40),
]
MODES = ("closed", "open", "jit", "stall")
SECONDS = 60.0
LEARNING = 10.0  # seconds left out of the share (slow start, the first pauses)
T0 = 1000.0  # the simulation's clock at its start


def cell(rate: float, burst: float, mode: str) -> tuple[float, float] | None:
    """(share of the rate served after ``LEARNING``, 429s per success) for one cell."""
    kw: dict[str, object] = {}
    callers = 48
    if mode in ("open", "jit"):
        callers = 0
        kw = {"arrivals": rate * 1.6, "deadline": 3.0}
        if mode == "jit":
            kw.update(jitter=0.005, seed=7)
    elif mode == "stall":
        if rate < 50:
            return None  # an 80 ms stall is a burst only where a bucket refills that fast
        kw = {"stalls": (3.0, 0.08)}
    run, ok, _ = simulate(callers, rate, burst, SECONDS, **kw)  # type: ignore[arg-type]
    served = sum(t >= T0 + LEARNING for t in ok) / (SECONDS - LEARNING) / rate
    return served, run.refused / max(1, run.successes)


#: Open-loop buckets whose limit lifts (the upstream takes everything from then on).
LIFTS = [(20, 1), (50, 5), (200, 5), (10, 5), (8, 1)]
LIFT_AT = (20.0, 30.0, 40.0)  # seconds from the start: averaged over where in a cycle it falls


def lift_cell(rate: float, burst: float) -> float:
    """Share of the demand (arrivals at 1.6x the old rate) served in the 10 s after the limit
    lifts, open loop, averaged over ``LIFT_AT``: how soon a lifted limit is found."""
    shares = []
    for lift in LIFT_AT:
        _, ok, _ = simulate(
            0, rate, burst, lift + 10.0, lift=lift, arrivals=rate * 1.6, deadline=3.0
        )
        served = sum(T0 + lift <= t < T0 + lift + 10.0 for t in ok)
        shares.append(served / (10.0 * rate * 1.6))
    return statistics.fmean(shares)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    cells = {}
    for rate, burst in BUCKETS:
        for mode in MODES:
            got = cell(float(rate), float(burst), mode)
            if got is not None:
                cells[f"{rate}/{burst} {mode}"] = got
    shares = [share for share, _ in cells.values()]
    refused = [per for _, per in cells.values()]
    lifts = {f"{rate}/{burst}": lift_cell(float(rate), float(burst)) for rate, burst in LIFTS}
    if args.json:
        print(json.dumps({"cells": cells, "mean_share": statistics.fmean(shares), "lifts": lifts}))
        return 0
    print(
        f"{SECONDS:.0f} virtual seconds; share of the rate from {LEARNING:.0f} s on"
        " / 429s per success"
    )
    print(f"{'bucket':>8}  " + "  ".join(f"{mode:>12}" for mode in MODES))
    for rate, burst in BUCKETS:
        row = []
        for mode in MODES:
            got = cells.get(f"{rate}/{burst} {mode}")
            row.append(f"{'-':>12}" if got is None else f"{got[0]:>5.0%} / {got[1]:.3f}")
        print(f"{rate:>5}/{burst:<2}  " + "  ".join(row))
    print(
        f"mean share {statistics.fmean(shares):.3f}, lowest {min(shares):.2f}; "
        f"429s per success: mean {statistics.fmean(refused):.3f}, highest {max(refused):.3f}"
    )
    print(
        "lifted limit, open loop: share of the demand served in the 10 s after the lift "
        f"(lift at {', '.join(f'{at:.0f}' for at in LIFT_AT)} s, averaged)"
    )
    print("  " + "  ".join(f"{bucket}: {share:.0%}" for bucket, share in lifts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
