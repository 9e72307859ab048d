"""Escalation: incidents for humans, deduplicated and sent off the request path.

The engine calls ``Escalator.report`` synchronously; it never blocks and
never raises. Incidents are folded per (key, category) within ``window``
seconds (the count is kept), queued in a bounded queue (overflow is counted
and dropped), and a worker task hands each to every ``seawall_escalate`` sink,
side by side, each for at most ``sink_timeout`` seconds: an ``async def`` sink
is awaited on the loop; a plain ``def`` sink runs in a daemon thread of its
own (it may block: the loop never waits for it), and an awaitable it returns
is then awaited on the loop. A thread cannot be stopped, so a sink whose
thread is still running (it outlived ``sink_timeout``) gets no incidents
until it returns: at most one thread per synchronous sink, ever. Repeats
folded since the last incident of their (key, category) go out with the next
one after the window, or as a last incident on ``aclose()``.

Incidents are delivered on one loop: the one the escalator was built on, else
the first running loop that reports. A report from a thread without a running
loop (``sw.call_sync``) is handed over to it; with none (no asyncio at all), to
the escalator's own loop in a daemon thread, until a running loop reports.

Every text field is redacted by the caller (the engine); ``report`` redacts
the context's string values and masks key-like context names once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from seawall._background import alive, cancel_and_wait, start_loop, stop_loop
from seawall._checks import number, whole
from seawall.outcome import Category, Severity
from seawall.redact import MASK, is_secret_param, redact_text

if TYPE_CHECKING:
    from seawall.plugins.hooks import Hooks

__all__ = ["EscalationPolicy", "Escalator", "Incident"]

log = logging.getLogger("seawall.escalation")


@attrs.frozen(kw_only=True)
class EscalationPolicy:
    """How incidents are folded and delivered.

    ``window``: seconds within which repeats of a (key, category) are folded into
    one incident. ``queue_size``: incidents waiting at most; more are dropped
    and counted. ``sink_timeout``: seconds a sink may take per incident (its
    thread, for a plain ``def`` sink, and any awaitable it returns).
    """

    window: float = attrs.field(default=60.0, validator=number(0, strict=True, unit="seconds"))
    queue_size: int = attrs.field(default=1000, validator=whole(1))
    sink_timeout: float = attrs.field(default=5.0, validator=number(0, strict=True, unit="seconds"))


@attrs.frozen(kw_only=True)
class Incident:
    """Something a human should look at. Every text field is already redacted."""

    severity: Severity
    category: Category
    key: str
    request: str  # "GET https://host/path?key=***"
    reason: str
    count: int = 1
    first_seen: float  # time.time()
    last_seen: float
    context: dict[str, Any] = attrs.field(factory=dict)

    def summary(self) -> str:
        """One line for logs and chat."""
        times = f" (x{self.count})" if self.count > 1 else ""
        return (
            f"[{self.severity.name}] {self.category.value} on {self.key}: "
            f"{self.reason} — {self.request}{times}"
        )

    def as_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        data["severity"] = self.severity.name
        data["category"] = self.category.value
        return data


@attrs.define
class _Fold:
    first_seen: float
    last_seen: float
    pending: int = 0  # occurrences since the last dispatch
    dispatched_at: float | None = None
    latest: Incident | None = None  # the last occurrence, for a flush on close


def _own(incident: Incident) -> Incident:
    """``incident`` with a context of its own (a shallow copy) for one sink."""
    return attrs.evolve(incident, context=dict(incident.context))


def _safe_context(context: dict[str, Any] | None) -> dict[str, Any]:
    safe: dict[str, Any] = {}
    for name, value in (context or {}).items():
        if is_secret_param(str(name)):
            safe[name] = MASK
        elif isinstance(value, str):
            safe[name] = redact_text(value)
        else:
            safe[name] = value
    return safe


class Escalator:
    """Folds, queues and delivers incidents for one ``Seawall``."""

    def __init__(
        self,
        hooks: Hooks,
        policy: EscalationPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hooks = hooks
        self.policy = policy or EscalationPolicy()
        self._clock = clock  # wall-clock seconds: incidents carry first/last seen times
        self._folds: dict[tuple[str, Category], _Fold] = {}
        self._queue: asyncio.Queue[Incident] | None = None
        self._worker: asyncio.Task[None] | None = None
        #: The loop incidents are delivered on (the worker's), and the escalator's own.
        self._loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):  # built on a running loop: deliver there
            self._loop = asyncio.get_running_loop()
        self._own: asyncio.AbstractEventLoop | None = None
        self._own_lock = threading.Lock()
        #: Synchronous sinks whose thread has not returned yet (one thread each at most).
        self._busy: set[str] = set()
        self.stats = {
            "reported": 0,
            "dispatched": 0,
            "folded": 0,
            "overflow": 0,
            "sink_errors": 0,  # raised or timed out
            "sink_timeouts": 0,
            "sink_skipped": 0,  # not called: its thread was still busy with an earlier one
        }

    def report(
        self,
        *,
        severity: Severity,
        category: Category,
        key: str,
        request: str,
        reason: str,
        context: dict[str, Any] | None = None,
    ) -> None:
        """Note an incident; queue it unless one like it went out within the window."""
        self.stats["reported"] += 1
        now = self._clock()
        fold_key = (key, category)
        fold = self._folds.get(fold_key)
        if fold is None:
            if len(self._folds) >= 4 * self.policy.queue_size:
                self._folds.clear()  # bounded memory under a flood of distinct keys
            fold = self._folds[fold_key] = _Fold(first_seen=now, last_seen=now)
        fold.last_seen = now
        fold.pending += 1
        if fold.pending == 1:
            fold.first_seen = now  # the first occurrence not yet told
        if fold.dispatched_at is not None and now - fold.dispatched_at < self.policy.window:
            self.stats["folded"] += 1
            return
        incident = Incident(
            severity=severity,
            category=category,
            key=key,
            request=request,
            reason=reason,
            count=fold.pending,
            first_seen=fold.first_seen,
            last_seen=now,
            context=_safe_context(context),
        )
        fold.dispatched_at = now
        fold.pending = 0
        fold.latest = incident
        self._enqueue(incident)

    def _enqueue(self, incident: Incident) -> None:
        if not self.hooks.has("seawall_escalate"):
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self._loop
        live = loop is not None and alive(loop)
        if running is None:
            self._hand_over(incident, loop if live else None)
            return
        if live and loop is not running and loop is not self._own:
            self._hand_over(incident, loop)  # another thread's loop delivers them
            return
        # The first running loop, one after a closed one, or an app's loop after the own one.
        self._loop = running
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=self.policy.queue_size)
        try:
            self._queue.put_nowait(incident)
        except asyncio.QueueFull:
            self.stats["overflow"] += 1
            return
        if self._worker is None or self._worker.done():
            self._worker = running.create_task(self._run(), name="seawall-escalation")

    def _hand_over(self, incident: Incident, loop: asyncio.AbstractEventLoop | None) -> None:
        """Queue ``incident`` on ``loop`` (else the escalator's own) from this thread."""
        target = loop if loop is not None else self._own_loop()
        try:
            target.call_soon_threadsafe(self._enqueue, incident)
        except RuntimeError:  # it closed meanwhile: the incident is lost, and counted
            self.stats["overflow"] += 1

    def _own_loop(self) -> asyncio.AbstractEventLoop:
        """The escalator's own loop, running in a daemon thread (started once)."""
        with self._own_lock:
            own = self._own
            if own is None or own.is_closed():
                own = self._own = start_loop("seawall-escalation", owner=self)
            return own

    async def _run(self) -> None:
        queue = self._queue
        assert queue is not None
        for _ in range(self.policy.queue_size * 4):  # bounded; exits when drained
            try:
                incident = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await self.deliver(incident)
            queue.task_done()

    async def deliver(self, incident: Incident) -> None:
        """Hand ``incident`` to every sink; a sink that raises, blocks or hangs is contained.

        Sinks run side by side, each bounded by ``sink_timeout``, so one hanging
        sink delays no other sink by more, and a blocking one never the loop.
        """
        self.stats["dispatched"] += 1
        calls = [  # each sink its own context: what one changes, the others never see
            self._bounded(plugin, function, [_own(incident) for _name in argnames])
            for plugin, function, argnames in self.hooks.impls("seawall_escalate")
        ]
        if calls:
            await asyncio.gather(*calls)

    async def _bounded(
        self, plugin: str, function: Callable[..., Any], args: Sequence[Any]
    ) -> None:
        timeout = self.policy.sink_timeout
        try:
            async with asyncio.timeout(timeout):
                if inspect.iscoroutinefunction(function):
                    result = function(*args)
                else:
                    if plugin in self._busy:
                        self.stats["sink_skipped"] += 1
                        return
                    result = await self._in_thread(plugin, function, args)
                if inspect.isawaitable(result):
                    await result
        except TimeoutError:
            self.stats["sink_errors"] += 1
            self.stats["sink_timeouts"] += 1
            running = (
                "; its thread is still running and it gets no incidents until it returns"
                if plugin in self._busy
                else ""
            )
            error = TimeoutError(
                f"escalation sink {plugin!r} did not finish within sink_timeout={timeout:g}s"
                f"{running}; make it faster or raise EscalationPolicy.sink_timeout"
            )
            self.hooks.fault(plugin, "seawall_escalate", error)
        except (Exception, asyncio.CancelledError) as exc:
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
                raise  # the worker itself is cancelled (aclose)
            # A sink's own CancelledError (it awaited something cancelled) would end the
            # worker: the other sinks and the incidents behind it would wait for a report.
            self.stats["sink_errors"] += 1
            self.hooks.fault(plugin, "seawall_escalate", exc)

    def _in_thread(
        self, plugin: str, function: Callable[..., Any], args: Sequence[Any]
    ) -> asyncio.Future[Any]:
        """Call ``function(*args)`` in a new daemon thread; its result as a future.

        Daemon, and not an executor's: a sink that never returns must not keep
        the process from exiting (executors join their threads at exit).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def settle(ok: bool, value: Any) -> None:
            self._busy.discard(plugin)
            if future.done():  # timed out meanwhile: nobody will await what it returned
                if inspect.iscoroutine(value):
                    value.close()  # else "coroutine ... was never awaited" when it is dropped
                return
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

        def run() -> None:
            try:
                ok, value = True, function(*args)
            except Exception as exc:
                ok, value = False, exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(settle, ok, value)

        thread = threading.Thread(target=run, name=f"seawall-sink:{plugin}", daemon=True)
        self._busy.add(plugin)
        thread.start()
        return future

    def flush(self) -> None:
        """Queue one incident for each (key, category) with repeats not yet told."""
        for fold in self._folds.values():
            if fold.pending and fold.latest is not None:
                incident = attrs.evolve(
                    fold.latest,
                    count=fold.pending,
                    first_seen=fold.first_seen,
                    last_seen=fold.last_seen,
                )
                fold.pending = 0
                self._enqueue(incident)

    async def drain(self, within: float = 5.0) -> None:
        """Wait (at most ``within`` seconds) until queued incidents are delivered."""
        loop = self._loop
        if loop is not None and loop is not asyncio.get_running_loop() and alive(loop):
            # The worker runs on another loop (the escalator's own): wait there.
            waited = asyncio.run_coroutine_threadsafe(self._drain_here(within), loop)
            # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancellation that
            # comes as the awaited future ends (bpo-42130), and drain would return.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within + 1.0):
                    await asyncio.wrap_future(waited)
            return
        await self._drain_here(within)

    async def _drain_here(self, within: float) -> None:
        worker = self._worker
        if (
            worker is not None
            and not worker.done()
            and worker.get_loop() is asyncio._get_running_loop()
        ):
            try:
                async with asyncio.timeout(within):
                    await asyncio.shield(worker)
            except TimeoutError:
                log.warning("seawall: escalation sinks did not finish within %.1fs", within)

    async def aclose(self, within: float = 5.0, *, stop_own: bool = True) -> None:
        """Tell folded repeats, deliver what is queued (bounded by ``within``
        seconds), then stop the worker and (unless ``stop_own`` is false: the
        ``Seawall`` closes its plugins first, which may close things on it) the
        escalator's own loop. Cancelled while it delivers, it still stops them."""
        self.flush()
        try:
            await self.drain(within)
        finally:
            try:
                worker = self._worker
                if worker is not None and not worker.done():
                    if self._loop is asyncio.get_running_loop():
                        await cancel_and_wait(worker)
                    elif self._loop is not None and alive(self._loop):
                        self._loop.call_soon_threadsafe(worker.cancel)
            finally:
                if stop_own:
                    self.stop_own()

    def stop_own(self) -> None:
        """Stop the escalator's own loop, if it has one; its thread closes it."""
        if self._own is not None:
            stop_loop(self._own)
