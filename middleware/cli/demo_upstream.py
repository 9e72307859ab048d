"""The demo's upstream: a local aiohttp server that lives through a scripted life.

Phases, as shares of the run, each measuring one thing: healthy (the steady
load), 30 % errors, healthy again for a moment (the errors' retries end
there, not in the outage), a full outage (every request answered 503 at
once), the recovery after it (how fast and how gently callers come back), a
rate-limited phase (a fixed-window limiter; the rest get 429 with
``Retry-After`` until the next window), and healthy again (what the callers
waiting on the limit do when it lifts). Every phase that fails calls is
followed by one that answers at once, so a retry that outlives its phase never
meets the next phase's trouble: each request counts in the phase it started in.
The server records the time and status of every request it answers, with the
time its logical request started (the client's ``x-demo-start`` header, the
same on every retry), which is what the demo counts.

In the errors phase both sides draw the same luck: whether a call fails is
decided by the seed, the logical request (the client's ``x-demo-request``
header) and how many calls of that request came before it, so the n-th
attempt of a request fails for the naive loop exactly when it fails for
seawall, and that row compares the two policies, not two dice.
"""

from __future__ import annotations

import asyncio
import math
import random

import attrs
from aiohttp import web

__all__ = [
    "HEALTHY",
    "PHASES",
    "REQUEST",
    "START",
    "Phase",
    "ScriptedUpstream",
    "phase_at",
    "script",
]

#: (name, label, share of the run) in order.
PHASES: tuple[tuple[str, str, float], ...] = (
    ("healthy", "healthy", 0.15),
    ("errors", "30 % errors", 0.15),
    ("calm", "errors over", 0.05),
    ("outage", "outage", 0.20),
    ("recovered", "recovered", 0.15),
    ("rate_limited", "rate-limited", 0.20),
    ("unlimited", "limit lifted", 0.10),
)

#: Phases in which the upstream answers everything with success.
HEALTHY = frozenset({"healthy", "calm", "recovered", "unlimited"})

#: The header in which the client says when a call's logical request started
#: (seconds since the start of the run).
START = "x-demo-start"

#: The header naming the logical request (the same on every retry): the
#: errors phase's draws follow it, so both sides of the demo draw the same luck.
REQUEST = "x-demo-request"

#: Share of requests answered 500 in the ``errors`` phase.
ERROR_RATE = 0.3


@attrs.frozen
class Phase:
    """One phase of the script, in seconds from the start of the run."""

    name: str
    label: str
    start: float
    end: float

    def __contains__(self, t: float) -> bool:
        return self.start <= t < self.end


def script(duration: float) -> tuple[Phase, ...]:
    """The phases of a run of ``duration`` seconds."""
    phases = []
    start = 0.0
    for name, label, share in PHASES:
        end = start + share * duration
        phases.append(Phase(name, label, round(start, 6), round(end, 6)))
        start = end
    return tuple(phases)


def phase_at(phases: tuple[Phase, ...], t: float) -> Phase | None:
    """The phase that contains ``t``, or ``None`` outside the run."""
    for phase in phases:
        if t in phase:
            return phase
    return None


class ScriptedUpstream:
    """An aiohttp server on 127.0.0.1 (random port) following ``phases``.

    :param limit: requests per second allowed in the rate-limited phase.
    :param window: the rate limiter's window, in seconds.
    """

    def __init__(
        self, phases: tuple[Phase, ...], *, seed: int, limit: float, window: float
    ) -> None:
        self.phases = phases
        self.limit = limit
        self.window = window
        #: (seconds since start, status, when its logical request started).
        self.hits: list[tuple[float, int, float]] = []
        self._seed = seed
        self._rng = random.Random(seed)  # for calls that do not name their request
        #: Calls made so far in the errors phase, per logical request.
        self._tries: dict[str, int] = {}
        self._t0: float | None = None
        self._window_index = -1
        self._window_used = 0
        self._runner: web.AppRunner | None = None

    def start(self, t0: float) -> None:
        """Start the script: ``t0`` is the loop time at which the run begins."""
        self._t0 = t0

    def _limited(self, t: float) -> float | None:
        """Seconds until the limiter's window resets when it is full, else ``None``.

        A fixed window of ``window`` seconds admits ``limit * window`` requests,
        as many APIs do; ``Retry-After`` says when the next window opens.
        """
        index = int(t / self.window)
        if index != self._window_index:
            self._window_index, self._window_used = index, 0
        if self._window_used < max(1, int(self.limit * self.window)):
            self._window_used += 1
            return None
        return (index + 1) * self.window - t

    def _fails(self, request: str | None) -> bool:
        """Whether this call of the errors phase is answered 500.

        A call naming its logical request draws from the seed, the request and
        the number of its calls before this one: two upstreams with one seed
        fail the n-th call of a request alike.
        """
        if request is None:
            return self._rng.random() < ERROR_RATE
        tries = self._tries.get(request, 0)
        self._tries[request] = tries + 1
        return random.Random(f"{self._seed}/{request}/{tries}").random() < ERROR_RATE

    def _answer(self, now: float, request: str | None = None) -> tuple[int, dict[str, str]]:
        if self._t0 is None:
            return 200, {}
        phase = phase_at(self.phases, now - self._t0)
        name = phase.name if phase is not None else "unlimited"
        if name == "errors" and self._fails(request):
            return 500, {}
        if name == "outage":
            return 503, {}
        if name == "rate_limited":
            wait = self._limited(now - self._t0)
            if wait is not None:
                return 429, {"Retry-After": f"{math.ceil(wait * 100) / 100:g}"}
        return 200, {}

    async def handle(self, request: web.Request) -> web.Response:
        now = asyncio.get_running_loop().time()
        status, headers = self._answer(now, request.headers.get(REQUEST))
        if self._t0 is not None:
            t = now - self._t0
            try:
                started = float(request.headers.get(START, t))
            except ValueError:
                started = t
            self.hits.append((t, status, started))
        return web.Response(status=status, text="ok" if status == 200 else "no", headers=headers)

    async def serve(self) -> str:
        """Start listening; return the base URL."""
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/work"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
