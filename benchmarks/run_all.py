"""Run every benchmark and write ``benchmarks/RESULTS.md`` (what ``make bench`` does).

    python benchmarks/run_all.py [--quick] [--out FILE]

Each scenario module runs in its own process (``--json``); this script only
collects their Markdown and describes the machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import machine, table

HERE = Path(__file__).resolve().parent

RUNS = [
    ("overhead.py", ["--server", "aiohttp"]),
    ("overhead.py", ["--server", "raw"]),
    ("peers.py", []),
]

_WHOLE = ["--rounds", "1", "--rate", "200", "--burst", "5", "--whole-seconds"]

# Scripts that print their own tables (no --json); their output goes in as it is.
PLAIN_RUNS = [
    ("ratelimit.py", [], ["--rounds", "1", "--calls", "4"]),
    (  # the whole-seconds proxy: a bucket of 5, only "Retry-After: 1", no rate headers
        "ratelimit.py",
        [*_WHOLE, "--calls", "80", "--settle", "10"],
        [*_WHOLE, "--calls", "4"],
    ),
    (
        "observer_overhead.py",
        ["--rounds", "5", "--requests", "2000"],
        ["--rounds", "2", "--requests", "200"],
    ),
    ("observe_call.py", [], ["--quick"]),
    ("timers.py", [], ["--quick"]),
    ("fleet.py", [], ["--quick"]),
    ("lift.py", ["--rounds", "1"], ["--quick"]),
]


def run_plain(script: str, args: list[str], quick_args: list[str], quick: bool) -> str:
    command = [sys.executable, str(HERE / script), *(quick_args if quick else args)]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{script} failed ({done.returncode}):\n{done.stderr}")
    shown = " ".join(["python", f"benchmarks/{script}", *(quick_args if quick else args)])
    seconds = time.monotonic() - started
    return f"## `{shown}` ({seconds:.0f} s)\n\n```\n{done.stdout.strip()}\n```"


def run(script: str, args: list[str], quick: bool) -> dict[str, object]:
    command = [sys.executable, str(HERE / script), *args, "--json", *(["--quick"] if quick else [])]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{script} {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    result["seconds"] = time.monotonic() - started
    result["command"] = " ".join(["python", f"benchmarks/{script}", *args])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run: proves it works")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = [run(script, extra, args.quick) for script, extra in RUNS]
    plain = [run_plain(script, extra, quick, args.quick) for script, extra, quick in PLAIN_RUNS]
    info = machine()
    parts = [
        "# Benchmark results",
        f"Written by `make bench` (`python benchmarks/run_all.py`"
        f"{' --quick' if args.quick else ''}) on "
        f"{datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}, "
        f"in {time.monotonic() - started:.0f} s. What each scenario measures and the "
        "targets: `benchmarks/README.md`. All figures are medians over interleaved rounds; "
        "the machine is shared and noisy, so read ratios, not absolute numbers.",
        "## Machine",
        table(["", ""], [[k, v] for k, v in info.items()]),
    ]
    for result in results:
        parts.append(f"## `{result['command']}` ({result['seconds']:.0f} s)")
        parts.append(str(result["markdown"]).replace("### ", "### "))
    parts.extend(plain)
    Path(args.out).write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
