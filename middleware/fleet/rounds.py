"""The fleet store's round trips to Redis: the background task, the breaker around them, falling
back and resyncing, and the server's clock.

``Rounds`` is the base of ``FleetStore``: it runs one exchange (``_exchange``,
the store's) every ``refresh`` seconds and when there is news (``_wake``), and
keeps the books of reaching Redis. A breaker of its own opens on the first
failed round trip (``_LINK_POLICY``): the store falls back to in-process state
(``_fell_back``), ``mode`` says ``"local-fallback"``, and about every half
second one round trip is let through; when one succeeds the store is linked
again (``_relinked``). Replies carry Redis's clock: ``offset`` converts them.

Where the task runs (``start``): on the event loop running when it is first
needed (a key's state is made, news is posted, ``mode`` is asked). With no
loop running (a sync-only app: ``call_sync`` and the sync forms from
threads), on a loop of its own in a daemon thread, ``seawall.fleet``. A task
whose loop ended (an ``asyncio.run`` that returned) is noticed and started
again on the loop (or thread) of the next need; until then ``mode`` says
``"local-fallback"``, never ``"shared"`` for a task that no longer runs.
Log lines of falling back and linking again are rate-limited
(``FLAP_LOG_EVERY``): a flapping link does not flood the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable

from seawall._background import cancel_and_wait
from seawall.breaker import Breaker
from seawall.fleet.link import Link, LinkError, describe
from seawall.fleet.repair import LogLimit
from seawall.policy import BreakerPolicy
from seawall.redis_url import REFRESH_MAX, TIMEOUT_MAX

__all__ = ["Rounds", "log"]

log = logging.getLogger("seawall.fleet")

#: The breaker around Redis: the first failed round trip opens it; retries
#: (a resync attempt) every half second or so.
_LINK_POLICY = BreakerPolicy(failure_threshold=1, recovery_timeout=0.5, window=1, minimum_calls=1)

#: Seconds between two log lines of the same kind (falling back, linking again, bad values).
FLAP_LOG_EVERY = 60.0

#: Seconds ``aclose`` waits for the fleet's own thread to end.
THREAD_JOIN = 2.0


class Rounds:
    """Round trips to Redis and the books of reaching it (the base of ``FleetStore``)."""

    def __init__(
        self, target: object, clock: Callable[[], float], *, timeout: float, refresh: float
    ) -> None:
        if not 0 < timeout <= TIMEOUT_MAX or not 0 < refresh <= REFRESH_MAX:
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
        #: The daemon thread the task runs in when no event loop ran where it was needed.
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        self._closed = False
        #: Set when the first key's state is made: a store with no key needs no task.
        self.needed = False
        #: Rate-limited log lines (``FLAP_LOG_EVERY``).
        self.log_limit = LogLimit(log, FLAP_LOG_EVERY)
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
        """``"shared"`` while linked to Redis by a running task, else ``"local-fallback"``."""
        self.start()  # a task whose loop ended is started again where it is asked
        return "shared" if self.linked and self.running else "local-fallback"

    @property
    def running(self) -> bool:
        """Whether the background task runs (its event loop alive)."""
        task = self._task
        return task is not None and not task.done() and not task.get_loop().is_closed()

    def start(self) -> None:
        """Start the background task where it is needed, unless it runs (see the module).

        On the running event loop; with none, on a loop of its own in a daemon
        thread. A task found dead (its loop ended) is started again here.
        """
        if self._closed or not self.needed or self.running:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._starting:  # threads may need it at once: one task
            if self._closed or self.running:
                return
            thread = self._thread
            if thread is not None and thread.is_alive() and loop is None:
                return  # the fleet's thread is starting its task
            if self._task is not None:
                self._lost_task()
            self._task = None
            self.link.reset()  # the old loop's connections are of no use to a new one
            if loop is not None:
                self._begin(loop)
                return
            self._thread = threading.Thread(
                target=_serve, args=(weakref.ref(self), self.link), name="seawall.fleet"
            )
            self._thread.daemon = True  # a sync app exits without closing the Seawall
            self._thread.start()

    def _begin(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        run = _run(weakref.ref(self), self.link)
        self._task = loop.create_task(run, name="seawall.fleet")

    def _lost_task(self) -> None:
        """The task's loop ended under it: run on in-process state until it runs again."""
        if self.linked:
            self._fall_back(LinkError("the event loop of the fleet's task ended"))

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
            except Exception as exc:  # a bug of ours must not stop the fleet's task
                self.log_limit.log(
                    "internal",
                    logging.ERROR,
                    "seawall: fleet sync failed (%s: %s); running on in-process state",
                    type(exc).__name__,
                    self.link.scrub(str(exc)),
                )
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
        self.log_limit.log(
            "fell-back",
            logging.WARNING,
            "seawall: Redis at %s out of reach (%s); every key runs on in-process state",
            self.where,
            self.link.scrub(str(exc)) if exc is not None else "an internal error",
        )

    def _relink(self) -> None:
        self.linked = True
        self.linked_at = self.clock()
        self._relinked()
        self.log_limit.log(
            "relinked",
            logging.INFO,
            "seawall: Redis at %s reached; state is shared by the fleet",
            self.where,
        )

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
        with self._starting:
            self._closed = True
        task, self._task = self._task, None
        thread, self._thread = self._thread, None
        if thread is not None:  # the task's loop is the thread's: cancel it there
            if task is not None:
                with contextlib.suppress(RuntimeError):  # (that loop ended already)
                    task.get_loop().call_soon_threadsafe(task.cancel)
            await asyncio.to_thread(thread.join, THREAD_JOIN)
            return  # the thread closed its client
        try:
            if task is not None and task.get_loop() is asyncio.get_running_loop():
                await cancel_and_wait(task)  # a cancelled close still closes the client
            elif task is not None and not task.get_loop().is_closed():
                with contextlib.suppress(RuntimeError):  # another loop's: cancelled there
                    task.get_loop().call_soon_threadsafe(task.cancel)
        finally:
            await self.link.aclose()


# The task and the thread hold their store only during a round (a weak reference between
# rounds): a Seawall dropped without aclose() ends them at the next round, rather than
# keeping a task (or a thread) per Seawall exchanging with Redis for good.


async def _run(ref: weakref.ref[Rounds], link: Link) -> None:
    """The background task: a round every ``refresh`` seconds, and at once on news."""
    try:
        while (store := ref()) is not None and not store._closed:
            await store.sync()
            wake, refresh = store._wake, store.refresh  # (read each round: tests set them)
            del store
            assert wake is not None
            wake.clear()
            try:
                async with asyncio.timeout(refresh):
                    await wake.wait()
            except TimeoutError:
                pass
    except GeneratorExit:
        # Closed unfinished, its loop gone (the task collected): nothing can be awaited.
        raise
    except BaseException:
        if (store := ref()) is None or not store._closed:  # its loop's end cancelled it
            with contextlib.suppress(Exception):  # (its connections die with the loop)
                await link.aclose()
        raise
    await link.aclose()  # collected, or closed meanwhile (a second close does nothing)


def _serve(ref: weakref.ref[Rounds], link: Link) -> None:
    """The fleet's own thread (no event loop ran where the task was needed)."""
    asyncio.run(_thread_main(ref, link))


async def _thread_main(ref: weakref.ref[Rounds], link: Link) -> None:
    """The fleet's own thread's loop: the task, then the client closed."""
    store = ref()
    if store is None:
        return
    with store._starting:
        if store._closed or store.running:
            return
        store._begin(asyncio.get_running_loop())
    task = store._task
    del store
    if task is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await link.aclose()
