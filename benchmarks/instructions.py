"""Client instructions per request, counted by valgrind: the deterministic success-path figure.

Wall-clock ratios on a shared 2-core machine move by several percent from
run to run; instruction counts move by well under one. For each variant, a
client process makes ``--requests`` requests (64 at a time) to the minimal
loopback upstream (its own process, not counted) under ``valgrind
--tool=callgrind``, and once more with none; the difference divided by the
requests is what one request costs the client. Not part of ``make bench``
(it needs valgrind and takes a few minutes).

    python benchmarks/instructions.py [--requests 2000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _common import VARIANTS, Upstream, closed_loop, emit, table

NAMES = ["bare", "passthrough", "seawall"]
WARM = 256


async def _client(name: str, url: str, requests: int) -> None:
    async with VARIANTS[name].open() as fetch:
        await closed_loop(fetch, url, WARM, 64)
        if requests:
            run = await closed_loop(fetch, url, requests, 64)
            if run["outcomes"].get("ok", 0) != requests:
                raise SystemExit(f"{name}: not every request succeeded: {run['outcomes']}")


def _count(name: str, url: str, requests: int) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--client",
        name,
        url,
        str(requests),
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=900, check=True)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def measure(requests: int) -> dict[str, Any]:
    per_request: dict[str, float] = {}
    with Upstream("raw") as upstream, ThreadPoolExecutor(max_workers=2) as pool:
        for name in NAMES:
            idle = pool.submit(_count, name, upstream.url, 0)
            busy = pool.submit(_count, name, upstream.url, requests)
            per_request[name] = (busy.result(1800) - idle.result(1800)) / requests
    return {
        "per_request": per_request,
        "vs_passthrough": per_request["seawall"] / per_request["passthrough"],
        "vs_bare": per_request["seawall"] / per_request["bare"],
    }


def render(result: dict[str, Any], requests: int) -> str:
    per = result["per_request"]
    rows = [
        [VARIANTS[n].label, per[n], per[n] - per["bare"], per[n] - per["passthrough"]]
        for n in NAMES
    ]
    return "\n\n".join(
        [
            f"### Client instructions per request (callgrind, {requests} requests, "
            "64 at a time, minimal loopback upstream)",
            table(["variant", "instructions", "added vs bare", "added vs pass-through"], rows),
            f"seawall / pass-through: {result['vs_passthrough']:.3f}; "
            f"seawall / bare: {result['vs_bare']:.3f}.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--client"]:
        name, url, requests = argv[1], argv[2], int(argv[3])
        asyncio.run(_client(name, url, requests))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    result = measure(args.requests)
    result["scenario"] = "instructions"
    result["markdown"] = render(result, args.requests)
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
