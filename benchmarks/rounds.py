"""A fleet round's key selection: event-loop time per round at many keys, and keys looked at.

    python benchmarks/rounds.py [--quick] [--keys 1000,10000] [--busy 0,300] [--rounds 300]

The fleet store reads at most ``READ_LIMIT`` keys a round (``seawall.fleet.schedule``);
this times how it picks them: ``ReadSchedule.due``, called as the store's round calls
it, on the states of a real ``FleetStore`` (made through ``Seawall.state_for``; Redis is
never reached: the store's task never runs, the script does not yield to the loop).
Between two rounds, ``--busy`` keys (the same ones every round) get a call each as
the request path counts it (``KeyState.begin``, the lean paths'
``KeyStats.lean_success``), and 5 keys have a 429's wait running (urgent). Medians
over ``--rounds`` rounds, after a warm-up that reads every key once; and how many of
the key states a round looked at (``states.get``/``[]`` and iteration of the mapping,
counted through a wrapper in one round of four, which is not timed).

``--instructions`` (valgrind): what noting a key's calls costs the request path, in
instructions per ``sw.call(fn, key=...)`` (the lean path; ``Seawall.run`` counts
through ``KeyStats.began`` the same way): in-process state, a fleet key in steady
use (noted once a round: every other call tests one slot), the same key with a plain
``KeyStats`` (the fleet before the notes), and a fleet key noted at
every call (its note set again before each: the first call after a read). Each case
makes ``--calls`` and then 6 x ``--calls`` calls inside ``functools.reduce`` (callgrind
collects there only); the difference over the extra calls is one call.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import statistics
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any

from _callgrind import count, run_cases

from seawall import Policy, Seawall
from seawall.fleet import Fleet, FleetStore
from seawall.fleet.schedule import IDLE_EVERY
from seawall.state import KeyState
from seawall.stats import KeyStats

#: Keys with a 429's wait running, in every run.
URGENT = 5


class Counted(Mapping[str, KeyState]):
    """The store's states, counting every state looked at (by key or by iteration)."""

    def __init__(self, states: dict[str, KeyState]) -> None:
        self.states = states
        self.looked = 0

    def __getitem__(self, key: str) -> KeyState:
        self.looked += 1
        return self.states[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.looked += 1
        return self.states.get(key, default)

    def __iter__(self) -> Iterator[str]:
        for key in list(self.states):
            self.looked += 1
            yield key

    def items(self) -> Any:
        self.looked += len(self.states)
        return self.states.items()

    def __len__(self) -> int:
        return len(self.states)


async def measure(keys: int, busy: int, rounds: int) -> tuple[float, float, float]:
    """Median and 90th percentile µs of a round's ``due``, and the states it looked at."""
    sw = Seawall(entrypoints=False, state=Fleet("redis://127.0.0.1:1", refresh=5.0))
    store = sw.store
    assert isinstance(store, FleetStore)
    policy = Policy()
    try:
        names = [f"https://host-{n}.example.com:443" for n in range(keys)]
        states = [sw.state_for(name, policy) for name in names]
        for state in states[:URGENT]:
            state.cooldown.start(3600.0)
        clock = store.clock
        schedule = store.schedule
        for _ in range(keys // 100 + 20):  # warm-up: every key read once (new keys are busy)
            schedule.due(store.states, clock(), IDLE_EVERY)
        counted = Counted(store.states)
        times: list[float] = []
        looked: list[int] = []
        hot = states[URGENT : URGENT + busy]
        gc.collect()
        for number in range(rounds):
            for state in hot:  # a call each since the last round
                if number % 2:
                    state.begin(clock())
                else:
                    state.budget.on_request(clock())
                    state.stats.lean_success(0.01)
            now = clock()
            if number % 4 == 3:  # one round in four counts the states looked at
                counted.looked = 0
                schedule.due(counted, now, IDLE_EVERY)
                looked.append(counted.looked)
                continue
            started = time.perf_counter()
            schedule.due(store.states, now, IDLE_EVERY)  # (timed on the store's own dict)
            times.append(time.perf_counter() - started)
    finally:
        await sw.aclose()
    times.sort()
    median = statistics.median(times) * 1e6
    return median, times[int(0.9 * len(times))] * 1e6, statistics.median(looked)


async def _instruction_cases(calls: int) -> None:
    """Run each case's loops inside ``functools.reduce`` (see the module); print their names."""
    local = Seawall(entrypoints=False)
    fleet = Seawall(entrypoints=False, state=Fleet("redis://127.0.0.1:1", refresh=5.0))
    store = fleet.store
    assert isinstance(store, FleetStore)

    async def fn() -> int:
        return 1

    async def plain(sw: Seawall, n: int) -> None:
        for _ in range(n):
            await sw.call(fn, key="k")

    state = fleet.state_for("k", fleet.policy)
    note = store.schedule._note

    async def noted(n: int) -> None:
        for _ in range(n):
            state.stats.note = note  # type: ignore[attr-defined]
            await fleet.call(fn, key="k")

    unnoted = fleet.state_for("u", fleet.policy)
    unnoted.stats = KeyStats()  # the fleet's key as before the notes

    async def before(n: int) -> None:
        for _ in range(n):
            await fleet.call(fn, key="u")

    cases: dict[str, Callable[[int], Coroutine[Any, Any, None]]] = {
        "in-process": functools.partial(plain, local),
        "fleet, KeyStats (before)": before,
        "fleet, steady": functools.partial(plain, fleet),
        "fleet, noted every call": noted,
    }
    for case in cases.values():
        await case(1)
    run_cases(cases, calls)
    await local.aclose()
    await fleet.aclose()


def instructions(calls: int) -> dict[str, float]:
    """Instructions per call of each case (callgrind; see the module)."""
    return count(__file__, "--instruction-cases", calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", default="1000,10000")
    parser.add_argument("--busy", default="0,300")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="a tiny run that proves it works")
    parser.add_argument("--instructions", action="store_true", help="the request path's cost")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--instruction-cases", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.instruction_cases:
        asyncio.run(_instruction_cases(args.instruction_cases))
        return
    if args.instructions:
        print(f"instructions per sw.call(fn, key=...) (callgrind, {args.calls * 5} calls)")
        for name, count in instructions(args.calls).items():
            print(f"  {name:<24} {count:>8.0f}")
        return
    keys = [int(k) for k in args.keys.split(",")]
    busy = [int(b) for b in args.busy.split(",")]
    rounds = args.rounds
    if args.quick:
        keys, busy, rounds = [200], [10], 20
    print(f"a round's key selection (ReadSchedule.due), median of {rounds} rounds")
    print(f"{'keys':>7} {'busy':>5} {'urgent':>6} {'median µs':>10} {'p90 µs':>8} {'looked':>7}")
    for count in keys:
        for calls in busy:
            median, p90, looked = asyncio.run(measure(count, calls, rounds))
            line = f"{count:>7} {calls:>5} {URGENT:>6} {median:>10.1f} {p90:>8.1f} {looked:>7.0f}"
            print(line)


if __name__ == "__main__":
    main()
