"""Parent side of the multi-process fleet tests: an upstream on 127.0.0.1 and worker processes."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

WORKER = str(Path(__file__).with_name("fleet_worker.py"))

#: Callers per worker process: 50 in all ...
CALLERS = (13, 13, 12, 12)
#: ... each pausing this long between calls: about 250 calls/s for the fleet.
THINK = 0.2
#: The breakers' recovery timeout, seconds.
RECOVERY = 1.0

#: The workers' round-trip time limit to Redis (``Fleet(timeout=)``), seconds: 150 ms, not the
#: default 50, so that a loaded test machine does not fall back, or fail to link again, by itself.
LINK_LIMIT = 0.15
#: Seconds between two of a worker's rounds (``Fleet(refresh=)``, the default).
REFRESH = 0.1

#: Seconds the workers get to start (imports on a loaded machine) and to finish.
START_LIMIT = 90.0
END_SLACK = 60.0


#: Seconds after its send (the worker's ``X-Sent``) after which the upstream's own event loop
#: handled a request late: it queued while the upstream (this test process) stalled, and the
#: verdict its limiter gave a backlog handled at once says nothing of the fleet's pacing.
LATE = 0.05


class FleetUpstream:
    """One upstream for the whole fleet: it can die, cut one worker off, or throttle.

    Every request is recorded as ``(monotonic time, worker id, status, seconds late)``:
    how long after the worker sent it (``X-Sent``, the system-wide monotonic clock) the
    upstream handled it.
    """

    def __init__(self, rate: float | None = None, burst: int = 1) -> None:
        self.dead = False
        self.partitioned: set[str] = set()
        self.throttle_once: set[str] = set()
        self.log: list[tuple[float, str, int, float]] = []
        #: ``(sent, worker id, status, X-Tag)``: what a worker knew at the send (diagnosis).
        self.tags: list[tuple[float, str, int, str]] = []
        #: A GCRA limiter of ``rate`` requests/s and ``burst``: a 429 with the wait in ms.
        self.rate = rate
        self.burst = burst
        self._tat = 0.0
        #: ``(when, seconds late)``: this process's event loop ran a 5 ms tick late (``watch``).
        self.stalls: list[tuple[float, float]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        worker = request.headers.get("X-Worker", "?")
        sent = request.headers.get("X-Sent")
        late = max(0.0, now - float(sent)) if sent else 0.0
        headers: dict[str, str] = {}
        if self.dead or worker in self.partitioned:
            status = 503
        elif worker in self.throttle_once:
            self.throttle_once.discard(worker)
            status, headers = 429, {"Retry-After": "4"}
        elif self.rate is not None:
            tat = max(self._tat, now)
            early = tat - now - (self.burst - 1) / self.rate
            if early > 1e-9:  # no token left
                status = 429
                headers = {"retry-after-ms": str(max(1, round(early * 1000)))}
            else:
                status = 200
                self._tat = tat + 1.0 / self.rate
        else:
            status = 200
        self.log.append((now, worker, status, late))
        if "X-Tag" in request.headers:  # a worker's state at the send (diagnosis)
            self.tags.append((now - late, worker, status, request.headers["X-Tag"]))
        return web.Response(status=status, text=str(status), headers=headers)

    async def watch(self, until: float) -> None:
        """Note, until ``until`` (monotonic), when this process's event loop stalled: the
        upstream admitted nothing then (bounded: one tick per 5 ms)."""
        while time.monotonic() < until:
            before = time.monotonic()
            await asyncio.sleep(0.005)
            late = time.monotonic() - before - 0.005
            if late > 0.01:
                self.stalls.append((time.monotonic(), late))

    def stalled(self, start: float, end: float) -> float:
        """Seconds of ``[start, end)`` this process's event loop was stalled."""
        return sum(max(0.0, min(t, end) - max(t - late, start)) for t, late in self.stalls)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.handle)
        return app

    def count(
        self,
        start: float,
        end: float,
        status: int | None = None,
        *,
        late: bool | None = None,
        sent: bool = False,
    ) -> int:
        """Requests handled in ``[start, end)`` (with ``status``); ``late``: only those the
        upstream handled more than ``LATE`` s after their send (``True``) or the others;
        ``sent``: those *sent* in ``[start, end)`` (the worker's ``X-Sent``), wherever the
        upstream's own loop handled them."""
        return sum(
            1
            for t, _, s, behind in self.log
            if start <= (t - behind if sent else t) < end
            and (status is None or s == status)
            and (late is None or (behind > LATE) == late)
        )


def configs(
    url: str, redis: str | None, duration: float, *, failure_threshold: int = 3, **extra: Any
) -> list[dict[str, Any]]:
    """The workers' configs (``fleet_worker.py``): one per entry of ``CALLERS``, sharing
    state through ``redis`` (``None``: in-process state) under a fresh key prefix."""
    prefix = f"p{uuid.uuid4().hex[:8]}"
    return [
        {
            "id": i,
            "redis": redis,
            "prefix": prefix,
            "url": url,
            "callers": n,
            "duration": duration,
            "think": THINK,
            "breaker": {"failure_threshold": failure_threshold, "recovery_timeout": RECOVERY},
            "timeout": LINK_LIMIT,
            "refresh": REFRESH,
            **extra,
        }
        for i, n in enumerate(CALLERS)
    ]


async def run_fleet(
    configs: list[dict[str, Any]], scenario: Callable[[float], Awaitable[None]]
) -> list[dict[str, Any]]:
    """Start one worker per config, let them go together, run ``scenario(t0)``, collect results."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            WORKER,
            json.dumps(cfg),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for cfg in configs
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), START_LIMIT)
            assert line == b"ready\n", line
        t0 = time.monotonic()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        await scenario(t0)
        results = []
        longest = max(cfg["duration"] for cfg in configs)
        for proc in procs:
            out, err = await asyncio.wait_for(proc.communicate(), longest + END_SLACK)
            assert proc.returncode == 0, err.decode()[-2000:]
            results.append(json.loads(out.decode().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
