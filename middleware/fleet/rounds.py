"""The fleet store's round trips to Redis: the background task, the breaker around them, falling
back and resyncing, and the server's clock.

``Rounds`` is the base of ``FleetStore``: it runs one exchange (``_exchange``,
the store's) every ``refresh`` seconds and when there is news (``_wake``), and
keeps the books of reaching Redis. A breaker of its own opens on the first
failed round trip (``_LINK_POLICY``): the store falls back to in-process state
(``_fell_back``), ``mode`` says ``"local-fallback"``, and about every half
second one round trip is let through; when one succeeds the store is linked
again (``_relinked``). Replies carry Redis's clock: ``offset`` converts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from seawall.breaker import Breaker
from seawall.fleet.link import Link, LinkError, describe
from seawall.policy import BreakerPolicy

__all__ = ["Rounds", "log"]

log = logging.getLogger("seawall.fleet")

#: The breaker around Redis: the first failed round trip opens it; retries
#: (a resync attempt) every half second or so.
_LINK_POLICY = BreakerPolicy(failure_threshold=1, recovery_timeout=0.5, window=1, minimum_calls=1)


class Rounds:
    """Round trips to Redis and the books of reaching it (the base of ``FleetStore``)."""

    def __init__(
        self, target: object, clock: Callable[[], float], *, timeout: float, refresh: float
    ) -> None:
        if not 0 < timeout <= 1 or not 0 < refresh <= 5:
            msg = (
                f"FleetStore(timeout={timeout!r}, refresh={refresh!r}): the timeout is "
                "seconds in (0, 1] (tens of ms), the refresh seconds in (0, 5]"
            )
            raise ValueError(msg)
        self.link = Link(target, timeout=timeout)
        self.where = describe(target)
        self.clock = clock
        self.refresh = refresh
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: True while the last round trip succeeded: state is shared.
        self.linked = False
        #: Local clock readings of the last changes of ``linked`` (for tests and reports).
        self.fell_back_at: float | None = None
        self.linked_at: float | None = None
        #: Server clock minus local clock, seconds (from the quickest recent reply).
        self.offset = 0.0
        self._best_rtt = float("inf")
        self._best_at = 0.0
        #: The breaker around Redis, on real time (a test's clock must not stall a resync).
        self.guard = Breaker("seawall.fleet.redis", _LINK_POLICY, time.monotonic)
        self._lock = asyncio.Lock()

    # --- what the store does (overridden) -------------------------------------------

    async def _exchange(self) -> None:
        """One round trip's work (``LinkError`` when Redis fails it)."""
        raise NotImplementedError

    def _before_round(self) -> None:
        """Called before each round, linked or not (no I/O)."""

    def _drop_news(self) -> None:
        """A round trip failed: what it was to publish is dropped (no I/O)."""

    def _fell_back(self) -> None:
        """Redis became out of reach: run on in-process state (no I/O)."""

    def _relinked(self) -> None:
        """Redis answers again: share state again (no I/O)."""

    # --- the books -------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``"shared"`` while linked to Redis, else ``"local-fallback"``."""
        return "shared" if self.linked else "local-fallback"

    def start(self) -> None:
        """Start the background task if an event loop runs and it is not running yet."""
        if self._task is not None or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # started by the first state made inside a loop
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._run(), name="seawall.fleet")

    async def _run(self) -> None:
        assert self._wake is not None
        wake = self._wake
        while not self._closed:
            await self.sync()
            wake.clear()
            try:
                async with asyncio.timeout(self.refresh):
                    await wake.wait()
            except TimeoutError:
                pass

    async def sync(self) -> bool:
        """One exchange with Redis now, unless the breaker around it is open.

        The background task calls it every ``refresh`` seconds (and when there
        is news to publish); tests call it to step the fleet. ``True`` when
        the state is shared after it.
        """
        async with self._lock:
            self._before_round()
            permit = self.guard.admit()
            if permit is None:
                return False
            try:
                await self._exchange()
            except LinkError as exc:
                self.guard.record(permit, failure=True)
                self.guard.call_failed()
                self._fall_back(exc)
            except Exception:  # a bug of ours must not stop the fleet's task
                log.exception("seawall: fleet sync failed; running on in-process state")
                self.guard.record(permit, failure=True)
                self.guard.call_failed()
                self._fall_back(None)
            else:
                self.guard.record(permit, failure=False)
            return self.linked

    def _fall_back(self, exc: LinkError | None) -> None:
        self._drop_news()
        if not self.linked and self.fell_back_at is not None:
            return
        self.linked = False
        self.fell_back_at = self.clock()
        self._fell_back()
        log.warning(
            "seawall: Redis at %s out of reach (%s); every key runs on in-process state",
            self.where,
            exc or "an internal error",
        )

    def _relink(self) -> None:
        self.linked = True
        self.linked_at = self.clock()
        self._relinked()
        log.info("seawall: Redis at %s reached; state is shared by the fleet", self.where)

    def _clock_sample(self, server: float, sent: float, received: float) -> None:
        """Keep the offset of the quickest recent round trip (a late reply says little).

        A sample's error is at most half its round trip; an old best sample
        loses 1 ms of credit per second, so the estimate follows drift.
        """
        rtt = received - sent
        aged = self._best_rtt + (received - self._best_at) * 0.001
        if rtt <= aged:
            self.offset = server - (sent + received) / 2
            self._best_rtt, self._best_at = rtt, received

    def _local(self, server_ms: int) -> float:
        return server_ms / 1000 - self.offset

    async def aclose(self) -> None:
        """Stop the background task and close the client this store made."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.link.aclose()
