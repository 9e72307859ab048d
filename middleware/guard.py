"""``async with sw.breaker("payments"): ...``: a block guarded by one key's breaker.

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
- A cancelled block (``CancelledError``, ``KeyboardInterrupt``) gives its
  permit back with no verdict, so a cancelled half-open probe frees its place.
- A half-open probe keeps its place for the key's attempt limit
  (``TimeoutPolicy.attempt``) at most: the block is not cut short, but past the
  limit another caller may probe (``Breaker.lend``), and the block's verdict,
  when it ends, is stale news. With ``attempt=None`` it keeps its place until it ends.

The block counts as one call of the key in ``sw.health()``: requests,
attempts, successes, failures by category, latency (the block's, from when
it was let in: a hold or a ramp turn is not in it), the last failure time;
a held block in ``held_total``, a refused one in ``rejections["breaker"]``.
One guard object may be shared by many tasks (``payments = sw.breaker("payments")``
at module level); each task's block has its own permit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from seawall._path import hold
from seawall._path.giveup import describe
from seawall._path.spec import CallSpec
from seawall.breaker import Permit
from seawall.calls import check_options
from seawall.context import merge as merge_context
from seawall.errors import AttemptRecord, CircuitOpenError
from seawall.outcome import SUCCESS, Classification, Outcome
from seawall.policy import Policy

if TYPE_CHECKING:
    from seawall.engine import Seawall

__all__ = ["BreakerGuard"]


class BreakerGuard:
    """``sw.breaker(key)``: use it as ``async with``; see the module's doc."""

    __slots__ = ("_context", "_entered", "_policy", "_sw", "key")

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
        self.key = key
        self._policy = policy
        self._context = context
        # Blocks in progress, by task: one guard may be shared by many tasks.
        self._entered: dict[asyncio.Task[Any] | None, tuple[CallSpec, Permit, float]] = {}

    def __repr__(self) -> str:
        return f"<seawall breaker guard for {self.key!r}>"

    async def __aenter__(self) -> BreakerGuard:
        task = asyncio.current_task()
        if task in self._entered:
            msg = (
                f"sw.breaker({self.key!r}) is already guarding a block of this task; "
                "nest blocks of different keys, or leave the first block before entering again"
            )
            raise RuntimeError(msg)
        sw = self._sw
        policy = self._policy or sw.policy_for_key(self.key)
        state = sw.state_for(self.key, policy)
        spec = CallSpec(
            key=self.key,
            policy=policy,
            state=state,
            method="BLOCK",
            context=merge_context(self._context),
            llm=policy.llm,
        )
        breaker = state.breaker
        if breaker.ramp_until:  # after a recovery: queue behind the released held calls
            await sw.path.ramp_turn(spec)
        started = sw.clock()
        observer = sw.path.observer
        # The key's books under its lock (sync threads change them under it too);
        # what there is to tell (a rejection, a transition) goes out after it.
        lock = state.lock
        with lock:
            state.begin(started)
            permit = breaker.admit()
            if permit is not None:
                state.cooldown.sent()  # in flight, as the attempt loop counts its own
                if permit.probe:  # a block hung on a read cannot hold the key's probe for ever
                    _lend(spec, permit, started)
        observer.flush()
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
        breaker, lock, observer = state.breaker, state.lock, sw.path.observer
        permit = None
        if breaker.policy.hold:
            at = sw.path._deadline_at(spec, sw.clock())  # the policy's or the inbound one
            permit = await hold.held(breaker, sw.clock, at, state.stats, lock, observer.flush)
        started = sw.clock()
        with lock:
            if permit is None:
                retry_after = breaker.retry_after()
                observer.reject(spec, "breaker", retry_after)
            else:
                state.cooldown.sent()
                if permit.probe:  # held, it took a probe's turn itself
                    _lend(spec, permit, started)
        observer.flush()
        if permit is None:
            raise CircuitOpenError(self.key, retry_after)
        return permit, started

    def _judge(
        self, spec: CallSpec, exc: BaseException | None, elapsed: float
    ) -> tuple[Classification, AttemptRecord | None]:
        """The block's classification, and its line in the history if it failed."""
        if exc is None:
            return SUCCESS, None
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

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        spec, permit, started = self._entered.pop(asyncio.current_task())
        state = spec.state
        sw = self._sw
        path = sw.path
        observer = path.observer
        lock = state.lock
        if exc is not None and not isinstance(exc, Exception):
            with lock:
                state.breaker.release(permit)  # cancelled: no news of the dependency
                state.cooldown.settle()
            observer.flush()
            return
        elapsed = sw.clock() - started
        try:
            c, record = self._judge(spec, exc, elapsed)  # plugins: before the lock
        except BaseException:
            with lock:  # nothing may keep the permit (a probe's) or the attempt in flight
                state.breaker.release(permit)
                state.cooldown.settle()
            raise
        # The books under the key's lock, as the attempt loop's settle keeps them;
        # the events and log lines told under it go out after it (flush).
        with lock:
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


def _lend(spec: CallSpec, permit: Permit, started: float) -> None:
    """The block's probe keeps its turn for the key's attempt limit at most
    (``Breaker.lend``): the guard cannot cut it short. Under the key's lock."""
    limit = spec.policy.timeout.attempt
    if limit is not None:
        spec.state.breaker.lend(permit, started + limit)
