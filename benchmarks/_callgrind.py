"""Instructions per call under callgrind: the driver ``instructions.py`` and ``rounds.py`` share.

A *client* script runs each of its cases ``calls`` and then ``calls * 6`` times,
each run inside one ``functools.reduce`` call (the only code callgrind
collects), and prints its cases' names as a JSON list on its last line. One
case's cost is the difference of its two runs over the ``calls * 5`` calls
between them: start-up and the loops' own cost cancel out.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

__all__ = ["count", "drive", "run_cases"]

Case = Callable[[int], Coroutine[Any, Any, None]]


def drive(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` to its end; it must not suspend (no event loop turns are counted)."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError("a case suspended; it must succeed at once")


def run_cases(cases: Mapping[str, Case], calls: int) -> None:
    """The client's side: each case ``calls`` then ``calls * 6`` times, each run in one
    ``functools.reduce`` call; then the names, for ``count``."""
    for name in cases:
        for n in (calls, calls * 6):
            functools.reduce(lambda _a, _b, n=n, name=name: drive(cases[name](n)), [0], None)
    print(json.dumps(list(cases)))


def count(script: str, flag: str, calls: int) -> dict[str, float]:
    """Run ``python script flag calls`` under callgrind; instructions per call of each case."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg")
        command = [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=functools_reduce",
            "--dump-after=functools_reduce",
            f"--callgrind-out-file={out}",
            sys.executable,
            script,
            flag,
            str(calls),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=True)
        names: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
        dumps = sorted(
            (p for p in os.listdir(tmp) if re.fullmatch(r"cg\.\d+", p)),
            key=lambda p: int(p.split(".")[1]),
        )
        totals = []
        for name in dumps:
            with open(os.path.join(tmp, name)) as f:
                found = re.search(r"^totals: (\d+)", f.read(), re.MULTILINE)
            if found is None:
                raise RuntimeError(f"no totals in callgrind dump {name}")
            totals.append(int(found.group(1)))
    if len(totals) != 2 * len(names):
        raise RuntimeError(f"expected {2 * len(names)} callgrind dumps, got {len(totals)}")
    return {name: (totals[2 * i + 1] - totals[2 * i]) / (calls * 5) for i, name in enumerate(names)}
