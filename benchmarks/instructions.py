"""Client instructions per request, counted by valgrind: the deterministic success-path figure.

Wall-clock ratios on a shared 2-core machine move by several percent from
run to run; instruction counts move by well under one. For each variant, a
client process makes ``--requests`` requests (64 at a time) to the minimal
loopback upstream (its own process, not counted) under ``valgrind
--tool=callgrind``, and once more with none; the difference divided by the
requests is what one request costs the client. Not part of ``make bench``
(it needs valgrind and takes a few minutes).

Then the pure decision cost in instructions: each case of ``overhead.py``'s
``CASES`` (``Seawall.run()``, the middleware's lean path, ``sw.call(fn)``,
``@sw.protect``, the peers installed of ``_decision_peers.py``, and the bare
awaits they are measured against) makes ``--calls`` and then ``--calls`` x 6
calls in one process under callgrind, collecting only inside those loops; the
difference divided by the extra calls is one call's cost. (tenacity and stamina
make all their calls here: their ~60 µs a call under callgrind take about a
minute more at the default count.)

    python benchmarks/instructions.py [--requests 2000] [--calls 1000] [--json]
    python benchmarks/instructions.py --decision-only     # about a minute
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

from _callgrind import count, run_cases
from _common import VARIANTS, Upstream, closed_loop, emit, table
from _decision_peers import PEERS, SYNC_PEERS, missing_note
from overhead import CASES, CLIENTS, decision_cases, labels, run_variant, sync_line, sync_ratios

NAMES = ["bare", "passthrough", "seawall"]
WARM = 256


async def _client(name: str, url: str, requests: int, client: str = "aiohttp") -> None:
    if client != "aiohttp":
        # One at a time: under valgrind, httpx's concurrent connects to the loopback
        # fail ("All connection attempts failed"), even 16 at once; one connection works.
        run = await run_variant(client, name, url, requests, 1)
        if run["outcomes"].get("ok", 0) != requests:
            raise SystemExit(f"{client} {name}: not every request succeeded: {run['outcomes']}")
        return
    async with VARIANTS[name].open() as fetch:
        await closed_loop(fetch, url, WARM, 64)
        if requests:
            run = await closed_loop(fetch, url, requests, 64)
            if run["outcomes"].get("ok", 0) != requests:
                raise SystemExit(f"{name}: not every request succeeded: {run['outcomes']}")


def _count(name: str, url: str, requests: int, client: str = "aiohttp") -> int:
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
        client,
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=900, check=True)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def measure(requests: int, client: str = "aiohttp") -> dict[str, Any]:
    """Client instructions per request of each variant of ``client`` (``overhead.CLIENTS``).

    The httpx clients send one request at a time (see ``_client``), after a
    warm-up request in the idle and the busy run alike.
    """
    per_request: dict[str, float] = {}
    with Upstream("raw") as upstream, ThreadPoolExecutor(max_workers=2) as pool:
        for name in NAMES:
            idle = pool.submit(_count, name, upstream.url, 0, client)
            busy = pool.submit(_count, name, upstream.url, requests, client)
            per_request[name] = (busy.result(1800) - idle.result(1800)) / requests
    return {
        "client": client,
        "per_request": per_request,
        "vs_passthrough": per_request["seawall"] / per_request["passthrough"],
        "vs_bare": per_request["seawall"] / per_request["bare"],
    }


async def _decision_client(calls: int) -> None:
    """Each case ``calls`` and ``calls * 6`` times, each loop inside ``functools.reduce``.

    callgrind collects (and dumps a profile) only inside ``functools_reduce``,
    so imports and setup are left out; one dump per loop, in ``CASES`` order.
    The loops never suspend (every call succeeds at once, the peers' too), so
    each is driven to its end inside ``reduce``, within this task. The last
    line printed is the JSON list of the cases measured (a peer that is not
    installed has none): ``_callgrind.run_cases``.
    """
    cases, sw = await decision_cases()
    run_cases(cases, calls)
    await sw.aclose()


def decision(calls: int) -> dict[str, float]:
    """Instructions per call of each case in ``CASES`` (see the module's docstring)."""
    per_call = count(__file__, "--decision-client", calls)
    for name, (_label, base) in CASES.items():
        if base is not None and name in per_call:
            per_call[f"{name}_minus_{base}"] = per_call[name] - per_call[base]
    for peer in PEERS:
        if per_call.get(f"{peer}_minus_fn", 0.0) > 0:
            per_call[f"call_vs_{peer}"] = per_call["call_minus_fn"] / per_call[f"{peer}_minus_fn"]
    sync_ratios(per_call)
    return per_call


def render_decision(per_call: dict[str, float], calls: int) -> str:
    rows = [
        [label, per_call[name], 0 if base is None else per_call[f"{name}_minus_{base}"]]
        for name, (label, base) in CASES.items()
        if name in per_call
    ]
    missing = [missing_note(name) for name in {**PEERS, **SYNC_PEERS} if name not in per_call]
    ratios = [f"{per_call[f'call_vs_{p}']:.2f}x {p}'s" for p in PEERS if f"call_vs_{p}" in per_call]
    return "\n\n".join(
        [
            f"### Decision cost in instructions per call (callgrind, {calls * 5} calls)",
            table(["path", "instructions", "added vs bare await"], rows),
            *([" ".join(missing)] if missing else []),
            *([f"`sw.call(fn)` adds {', '.join(ratios)} instructions."] if ratios else []),
            *([line.replace(" µs", " instructions")] if (line := sync_line(per_call)) else []),
        ]
    )


def render(result: dict[str, Any], requests: int) -> str:
    per = result["per_request"]
    client = result.get("client", "aiohttp")
    label = labels(client)
    at_once = "64 at a time" if client == "aiohttp" else "one at a time"
    rows = [[label[n], per[n], per[n] - per["bare"], per[n] - per["passthrough"]] for n in NAMES]
    return "\n\n".join(
        [
            f"### Client instructions per request ({CLIENTS[client]}; callgrind, "
            f"{requests} requests, {at_once}, minimal loopback upstream)",
            table(["variant", "instructions", "added vs bare", "added vs pass-through"], rows),
            f"seawall / pass-through: {result['vs_passthrough']:.3f}; "
            f"seawall / bare: {result['vs_bare']:.3f}.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--client"] and len(argv) == 5:  # the measured child process
        name, url, requests, client = argv[1], argv[2], int(argv[3]), argv[4]
        asyncio.run(_client(name, url, requests, client))
        return 0
    if argv[:1] == ["--decision-client"]:
        asyncio.run(_decision_client(int(argv[1])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--decision-only", action="store_true")
    parser.add_argument(
        "--client",
        choices=list(CLIENTS),
        action="append",
        help="the client(s) counted end to end (repeatable; default aiohttp): aiohttp, "
        "httpx (httpx.AsyncClient) or httpx-sync (httpx.Client, one at a time)",
    )
    parser.add_argument(
        "--no-decision", action="store_true", help="skip the decision cost in instructions"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    result: dict[str, Any] = {}
    parts = []
    if not args.decision_only:
        clients = args.client or ["aiohttp"]
        for client in clients:
            measured = measure(args.requests, client)
            parts.append(render(measured, args.requests))
            if client == clients[0]:
                result = dict(measured)
            result.setdefault("clients", {})[client] = measured
    if not args.no_decision:
        result["decision"] = decision(args.calls)
        parts.append(render_decision(result["decision"], args.calls))
    result["scenario"] = "instructions"
    result["markdown"] = "\n\n".join(parts)
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
