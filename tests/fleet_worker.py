"""One fleet member as a real OS process (``test_fleet_processes.py``, ``benchmarks/fleet.py``).

Run as ``python fleet_worker.py '<json>'``. It builds a ``Seawall`` (shared
through Redis when ``redis`` is given), prints ``ready`` once its store is
linked, reads a ``go`` line on stdin, then runs ``callers`` callers for
``duration`` seconds, each calling ``url`` then pausing ``think`` seconds
(the callers' own pace, not a wait for state). A monitor task records, on
the system-wide monotonic clock, every change of ``health().state`` and of
the key's breaker, when a shared cooldown reached this process, and how late
its own 5 ms ticks ran (``stalls``: the process's event loop stalled). Callers
still waiting ``GRACE`` s after the end are cancelled and counted (``stuck``).
The last line printed is the JSON result.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from yarl import URL

from seawall import Seawall
from seawall.errors import SeawallError
from seawall.fleet import Fleet
from seawall.policy import BreakerPolicy, Policy, RetryPolicy

#: Seconds a worker may take to link to Redis before it says ready anyway.
LINK_LIMIT = 20.0

#: Seconds after ``duration`` after which callers still waiting are cancelled and counted
#: (``stuck``): a worker always ends, and a test can tell a hang from a slow run.
GRACE = 5.0


async def main(cfg: dict[str, Any]) -> dict[str, Any]:
    policy = Policy(
        breaker=BreakerPolicy(**cfg.get("breaker", {})),
        retry=RetryPolicy(**cfg.get("retry", {})),
    )
    timing = {"timeout": cfg.get("timeout", 0.05), "refresh": cfg.get("refresh", 0.1)}
    state = Fleet(cfg["redis"], prefix=cfg["prefix"], **timing) if cfg.get("redis") else None
    sw = Seawall(policy, entrypoints=False, state=state)
    url = URL(cfg["url"])
    key, key_policy, _ = sw.route(url)
    kept = sw.state_for(key, key_policy)
    if state is not None:
        deadline = time.monotonic() + LINK_LIMIT
        while sw.health().state != "shared" and time.monotonic() < deadline:
            await sw.store.sync()  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # "go"
    began = time.monotonic()
    end = began + cfg["duration"]
    outcomes: Counter[str] = Counter()
    modes: list[tuple[float, str]] = [(began, sw.health().state)]
    states: list[tuple[float, str]] = [(began, kept.breaker.state.value)]
    cooled: list[float] = []
    stalls: list[tuple[float, float]] = []  # (when the monitor woke, how late)
    trace: list[list[Any]] = []  # cfg["trace"]: the key's pace every 100 ms (for diagnosis)
    headers = {"X-Worker": str(cfg["id"])}

    async def monitor() -> None:
        traced = float("-inf")
        while time.monotonic() < end:
            now = time.monotonic()
            if cfg.get("trace") and now - traced >= 0.1:
                traced = now
                cd: Any = kept.cooldown
                trace.append([now, cd.rate, getattr(cd, "shared", None), cd.cuts, cd.until])
            mode = sw.store.mode
            if mode != modes[-1][1]:
                # When the store changed mode (its own reading), not when this poll saw it:
                # a loaded machine may run this task late.
                store: Any = sw.store
                at = store.fell_back_at if mode == "local-fallback" else store.linked_at
                modes.append((now if at is None else at, sw.health().state))  # what users see
            state = kept.breaker.state.value
            if state != states[-1][1]:
                states.append((now, state))
            if kept.cooldown.remaining() > 0.5 and not cooled:
                cooled.append(now)
            await asyncio.sleep(0.005)
            late = time.monotonic() - now - 0.005
            # The loop ran this task late: the process was stalled (no CPU, or its loop
            # busy). Every lateness over 2 ms counts: under load many short ones (each
            # under 10 ms) added up to 50 ms and more within the 200 ms fallback bound.
            if late > 0.002:
                stalls.append((time.monotonic(), late))

    async def stamp(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        # After seawall's middleware: when the attempt leaves, on the system-wide clock.
        now = time.monotonic()
        request.headers["X-Sent"] = f"{now:.6f}"
        if cfg.get("tag"):  # what this process knew when the attempt left (for diagnosis)
            b: Any = kept.breaker
            request.headers["X-Tag"] = (
                f"{sw.store.mode}|{b.state.value}|{b._clock() - getattr(b, 'granted_at', 0):.3f}"
                f"|{getattr(b, 'awaiting', '-')}"
            )
        return await handler(request)

    async with sw.session(middlewares=(stamp,)) as session:

        async def caller() -> None:
            while time.monotonic() < end:
                try:
                    async with session.get(url, headers=headers) as resp:
                        await resp.read()
                        outcomes[f"status {resp.status}"] += 1
                except SeawallError as exc:
                    outcomes[type(exc).__name__] += 1
                except Exception as exc:
                    outcomes[f"other {type(exc).__name__}"] += 1
                await asyncio.sleep(cfg["think"])

        tasks = [asyncio.create_task(monitor())]
        tasks += [asyncio.create_task(caller()) for _ in range(cfg["callers"])]
        _, pending = await asyncio.wait(tasks, timeout=end + GRACE - time.monotonic())
        for task in pending:  # a caller still waiting long after the end: stuck, counted
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    await sw.aclose()
    return {
        "id": cfg["id"],
        "began": began,
        "outcomes": dict(outcomes),
        "modes": modes,
        "states": states,
        "cooled": cooled[0] if cooled else None,
        "stuck": len(pending),
        "stalls": stalls,
        "trace": trace,
    }


if __name__ == "__main__":
    result = asyncio.run(main(json.loads(sys.argv[1])))
    print(json.dumps(result), flush=True)
