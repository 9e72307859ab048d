"""``async with sw.breaker("payments"): ...``: a block guarded by one key's breaker.

``with sw.breaker("payments"): ...`` guards a block of sync code the same way
(a thread pool's worker, a Django or Flask view, a Celery task): same breaker,
same rules, differences below.

For code that should stop calling a failing dependency but not retry it: no
retries, no backoff or cooldown waits, no time limit, only the key's circuit
breaker (the same one that ``sw.call``, the middleware and the transports use
for that key), with its recovery rules.

- Entering asks the breaker for a permit. An open breaker raises
  ``CircuitOpenError`` and the block does not run: at once, unless a probe's
  verdict is expected within ``BreakerPolicy.hold`` (a probe in flight, or
  due that soon) and before the deadline (``seawall.deadline()``, the
  policy's ``TimeoutPolicy.deadline``). Then the block is held for it as
  ``sw.call`` is (``seawall._path.hold``): it runs when the probe succeeds, at
  its paced turn in the ramp after the recovery, and gets ``CircuitOpenError``
  when the probe fails or the hold runs out. At most ``hold_max_calls`` wait
  per key (the rest are refused at once); ``hold=0`` never holds. A block
  cancelled while held gives its place and its turn back and does not run.
- A block that arrives while the calls released by a recovery leave one by one
  (the ramp) takes the next turn, as ``sw.call`` does, instead of jumping them.
- Leaving normally records a success.
- An exception leaving the block is classified like any attempt's (the
  key's classifiers, your patterns and plugins): the breaker counts it when
  its classification ``counts_as_failure``; a caller error or a 4xx-like
  error does not trip it; a rate limit with a wait starts the key's cooldown
  (for the key's other calls: the guard itself never waits for a cooldown).
  The exception is never swallowed.
- A cancelled block (``CancelledError``, ``KeyboardInterrupt``,
  ``SystemExit``) gives its permit back with no verdict, so a cancelled
  half-open probe frees its place.
- A half-open probe keeps its place for the key's attempt limit
  (``TimeoutPolicy.attempt``) at most: the block is not cut short, but past the
  limit another caller may probe (``Breaker.lend``), and the block's verdict,
  when it ends, is stale news. With ``attempt=None`` it keeps its place until it ends.

``with`` (a thread): the thread is held by blocking (``hold.held_thread``,
in the key's one queue of held calls, threads and async calls alike) and
sleeps its ramp turn with the ``Seawall``'s ``sleep``, as the other sync forms
do (``seawall._path.threads``). On an event loop's thread (``with`` inside a
coroutine) it works but is never held: blocking there would stop every task
on the loop, maybe the probe it waits for, so it is refused at once where it
would be held, and a ramp turn sleeps the loop (warned about once per
``Seawall``); use ``async with`` there.

The block counts as one call of the key in ``sw.health()``: requests,
attempts, successes, failures by category, latency (the block's, from when
it was let in: a hold or a ramp turn is not in it), the last failure time;
a held block in ``held_total``, a refused one in ``rejections["breaker"]``.
One guard object may be shared by many tasks and threads (``payments =
sw.breaker("payments")`` at module level); each block has its own permit.
Blocks are told apart by task (``async with``, and ``with`` inside a task) or
by thread (``with``); entering the guard again inside its own block, in the
same task or thread, is a ``RuntimeError``.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from seawall._path import hold
from seawall._path.giveup import describe, turn_past_deadline
from seawall._path.spec import CallSpec
from seawall._path.threads import on_a_loop, ramp_turn, wait
from seawall.breaker import Permit
from seawall.calls import check_options
from seawall.context import merge as merge_context
from seawall.errors import AttemptRecord, CircuitOpenError
from seawall.outcome import SUCCESS, Classification, Outcome
from seawall.policy import Policy
from seawall.redact import redact_key

if TYPE_CHECKING:
    from seawall._path.observer import Observer
    from seawall.engine import Seawall
    from seawall.state import KeyState

__all__ = ["BreakerGuard"]


class BreakerGuard:
    """``sw.breaker(key)``: use it as ``async with`` or ``with``; see the module's doc."""

    __slots__ = ("_context", "_entered", "_named", "_policy", "_sw", "key")

    def __init__(
        self,
        sw: Seawall,
        key: str,
        *,
        policy: Policy | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        check_options("sw.breaker", key, policy, key_required=True)
        if not key:
            msg = "sw.breaker(key=''): name the dependency, e.g. sw.breaker('payments')"
            raise ValueError(msg)
        self._sw = sw
        #: The key as shown and kept (``redact_key``: a secret masked, what does not print
        #: escaped), so the block shares the state of ``sw.call(fn, key=key)``.
        self.key = redact_key(key)
        self._named = key  # the route policy of that name, as ``sw.call`` finds it
        self._policy = policy
        self._context = context
        # Blocks in progress, by task (``async with``; ``with`` in a task) or by thread
        # (``with``): one guard may be shared by many tasks and threads.
        self._entered: dict[object, tuple[CallSpec, Permit, float]] = {}

    def __repr__(self) -> str:
        return f"<seawall breaker guard for {self.key!r}>"

    # --- async with -----------------------------------------------------------------

    async def __aenter__(self) -> BreakerGuard:
        task = asyncio.current_task()
        if task in self._entered:
            raise self._again(task)
        spec = self._spec()
        if spec.state.breaker.ramp_until:  # after a recovery: queue behind the released calls
            await self._sw.path.ramp_turn(spec)
        permit, started = self._admit(spec)
        if permit is None:  # refused: held for a near verdict, or CircuitOpenError
            permit, started = await self._held(spec)
        self._entered[task] = (spec, permit, started)
        return self

    async def _held(self, spec: CallSpec) -> tuple[Permit, float]:
        """After the breaker refused: wait for a probe's verdict due within ``hold`` (and
        the deadline), as ``sw.call`` does (``hold.held``); the permit and when the block
        starts, or ``CircuitOpenError`` (the probe failed, the hold ran out or is full).

        Cancelled while held, the call leaves no trace (its place in the queue,
        its ramp turn go back: ``hold.held``); the block does not run.
        """
        sw, state = self._sw, spec.state
        permit = None
        if state.breaker.policy.hold:
            at = sw.path._deadline_at(spec, sw.clock())  # the policy's or the inbound one
            flush = sw.path.observer.flush
            try:
                permit = await hold.held(
                    state.breaker, sw.clock, at, state.stats, state.lock, flush
                )
            except hold.TurnPastDeadline:
                raise turn_past_deadline(sw.path.observer, spec, [], "block") from None
        return self._let_in(spec, permit)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._left(self._entered.pop(asyncio.current_task()), exc)

    # --- with (a thread) ------------------------------------------------------------

    def __enter__(self) -> BreakerGuard:
        on_loop = on_a_loop()
        who = _owner(on_loop)
        if who in self._entered:
            raise self._again(who)
        spec = self._spec()
        if spec.state.breaker.ramp_until:  # after a recovery: queue behind the released calls
            ramp_turn(self._sw.path, spec, self._sleep(spec))
        permit, started = self._admit(spec)
        if permit is None:  # refused: held for a near verdict, or CircuitOpenError
            permit, started = self._held_thread(spec, on_loop)
        self._entered[who] = (spec, permit, started)
        return self

    def _held_thread(self, spec: CallSpec, on_loop: bool) -> tuple[Permit, float]:
        """``_held`` for a thread: it blocks (``hold.held_thread``), then sleeps its turn
        in the ramp. Never on an event loop's thread, whose tasks (the probe among them,
        maybe) would wait with it: refused at once there."""
        sw, state = self._sw, spec.state
        permit = None
        if state.breaker.policy.hold and not on_loop:
            at = sw.path._deadline_at(spec, sw.clock())  # the policy's or the inbound one
            try:
                permit = hold.held_thread(
                    state.breaker,
                    sw.clock,
                    at,
                    state.stats,
                    state.lock,
                    sw.path.observer.flush,
                    self._sleep(spec),
                )
            except hold.TurnPastDeadline:
                raise turn_past_deadline(sw.path.observer, spec, [], "block") from None
        return self._let_in(spec, permit)

    def _sleep(self, spec: CallSpec) -> Callable[[float], None]:
        """How the thread sleeps a ramp turn: the ``Seawall``'s ``sleep`` (instant in
        test mode, warned about on an event loop's thread), as the other sync forms."""
        sw = self._sw
        return functools.partial(wait, sw.path, spec, sw.sleep)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._left(self._entered.pop(_owner(on_a_loop())), exc)

    # --- both -----------------------------------------------------------------------

    def _again(self, who: object) -> RuntimeError:
        """The error for a block entered again by the task or thread ``who`` inside its own."""
        whose = "task" if isinstance(who, asyncio.Task) else "thread"
        msg = (
            f"sw.breaker({self.key!r}) is already guarding a block of this {whose}; "
            "nest blocks of different keys, or leave the first block before entering again"
        )
        return RuntimeError(msg)

    def _spec(self) -> CallSpec:
        """The block's call: the key's policy and state (created on first use)."""
        registry = self._sw.registry  # not the facade's forwarding methods: a call less each
        policy = self._policy or registry.policy_for_key(self._named)
        return CallSpec(
            key=self.key,
            policy=policy,
            state=registry.state_for(self.key, policy),
            method="BLOCK",
            context=merge_context(self._context),
            llm=policy.llm,
        )

    def _admit(self, spec: CallSpec) -> tuple[Permit | None, float]:
        """The block begins: the breaker's permit (``None``: refused) and when it started.

        The key's books under its lock (threads and the event loop change them under
        it); what there is to tell (a rejection, a transition) goes out after it.
        """
        state = spec.state
        path = self._sw.path
        started = path.clock()
        with state.lock:
            state.begin(started)
            permit = state.breaker.admit()
            if permit is not None:
                state.cooldown.sent()  # in flight, as the attempt loop counts its own
                if permit.probe:  # a block hung on a read cannot hold the key's probe for ever
                    _lend(spec, permit, started)
        _told(path.observer, state, permit)
        return permit, started

    def _let_in(self, spec: CallSpec, permit: Permit | None) -> tuple[Permit, float]:
        """After a hold: the block goes with ``permit`` (counted in flight, a probe's turn
        lent), or, with ``None``, is refused as ``Loop.admit`` refuses a held call."""
        sw, state = self._sw, spec.state
        observer = sw.path.observer
        started = sw.clock()
        with state.lock:
            if permit is None:
                retry_after = state.breaker.retry_after()
                observer.reject(spec, "breaker", retry_after)
            else:
                state.cooldown.sent()
                if permit.probe:  # held, it took a probe's turn itself
                    _lend(spec, permit, started)
        _told(observer, state, permit)
        if permit is None:
            raise CircuitOpenError(self.key, retry_after)
        return permit, started

    def _left(self, entry: tuple[CallSpec, Permit, float], exc: BaseException | None) -> None:
        """The block ended (``exc``: what it raised): the verdict, in the key's books.

        ``async with`` and ``with`` alike. The exception is never swallowed (the
        caller's ``__exit__`` returns ``None``).
        """
        spec, permit, started = entry
        state = spec.state
        path = self._sw.path
        observer = path.observer
        elapsed = path.clock() - started
        if exc is None:
            c, record = SUCCESS, None
        elif not isinstance(exc, Exception):  # cancelled, interrupted: no news of the dependency
            _give_back(state, permit)
            observer.flush()
            return
        else:
            try:
                c, record = self._judge(spec, exc, elapsed)  # plugins: before the lock
            except BaseException:
                _give_back(state, permit)  # nothing may keep the permit or the attempt
                raise
        # The books under the key's lock, as the attempt loop's settle keeps them;
        # the events and log lines told under it go out after it (flush).
        with state.lock:
            state.stats.attempted()  # a finished attempt (a cancelled one is not counted)
            # The attempt loop's own verdict: breaker, cooldown, escalation alike.
            path._record(spec, permit, c, None)
            if observer.observed:
                observer.attempt(spec, 1, None, exc, c, elapsed)
            if record is not None:
                state.stats.count("failures", c.category.value)
                if c.counts_as_failure:
                    state.breaker.call_failed(permit)  # a lapsed probe's: stale
                observer.failed(spec, record, c)
            observer.finish(spec, elapsed, c, None, 1, None, observer.observed)
        observer.flush()

    def _judge(
        self, spec: CallSpec, exc: BaseException, elapsed: float
    ) -> tuple[Classification, AttemptRecord | None]:
        """The classification of the exception the block raised, and its line in the
        history if it is a failure."""
        outcome = Outcome(
            key=spec.key,
            method=spec.method,
            exception=exc,
            elapsed=elapsed,
            context=spec.context,
            llm=spec.llm,
        )
        c = self._sw.classify(outcome)[0]
        if c.is_success:
            return c, None
        return c, AttemptRecord(1, describe(None, exc), c.category.value, elapsed)


def _owner(on_loop: bool) -> object:
    """Whose ``with`` block it is: the task's when a task on this thread's loop runs it
    (two tasks may interleave their blocks), else the thread's."""
    if on_loop:
        task = asyncio.current_task()
        if task is not None:
            return task
    return threading.current_thread()


def _give_back(state: KeyState, permit: Permit) -> None:
    """A block left with no verdict: its permit back (a probe's turn frees), not in flight."""
    with state.lock:
        state.breaker.release(permit)
        state.cooldown.settle()


def _told(observer: Observer, state: KeyState, permit: Permit | None) -> None:
    """``observer.flush()`` once the block was let in with ``permit`` (or refused: ``None``).
    Interrupted there (Ctrl-C in a log handler or a plugin told of the move to half-open),
    the block never runs: the permit goes back (``_give_back``)."""
    try:
        observer.flush()
    except BaseException:
        if permit is not None:
            _give_back(state, permit)
        raise


def _lend(spec: CallSpec, permit: Permit, started: float) -> None:
    """The block's probe keeps its turn for the key's attempt limit at most
    (``Breaker.lend``): the guard cannot cut it short. Under the key's lock."""
    limit = spec.policy.timeout.attempt
    if limit is not None:
        spec.state.breaker.lend(permit, started + limit)
