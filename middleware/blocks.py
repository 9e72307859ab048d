"""The block form: ``async for attempt in sw.attempts(key=...): with attempt: ...``
(and ``for attempt in ...`` in sync code, see ``seawall.sync``).

For code that is not a function. Each ``with attempt:`` block is one attempt:
leaving it normally is a success (the loop ends); an exception raised in it is
the attempt's failure, which the block swallows so that the loop can go on:
seawall classifies it, waits, and hands out the next attempt, or stops and
raises from the ``async for`` (the original exception with the attempt
history in its notes, or seawall's error).

The attempt loop (``seawall._path.loop``) drives the attempts; here it runs
in a helper task that waits, for each attempt, for the block's report. An
attempt's own time limit cannot cut a block short (the block does not run in
that task), so the block form runs without one: bound the block with
``asyncio.timeout`` yourself. A deadline is still checked between attempts.
A half-open breaker's probe keeps its turn for the attempt limit at most:
past it, another caller may probe, and the block's verdict is stale news
(``Breaker.lend``; with ``attempt=None`` the probe keeps its turn until it ends).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from seawall import sync
from seawall._path.spec import Attempt, CallSpec
from seawall._path.threads import Block, SyncRun, loud_stop
from seawall.calls import Retried, check_options, retry_predicate
from seawall.context import merge as merge_context
from seawall.policy import Policy
from seawall.redact import redact_key

if TYPE_CHECKING:
    from seawall.engine import Seawall

__all__ = ["AttemptBlock", "Attempts"]


class AttemptBlock(Block):
    """One attempt of the block form: use it as ``with attempt:``."""

    __slots__ = ("_report",)

    def __init__(self, number: int, report: asyncio.Future[BaseException | None]) -> None:
        super().__init__(number)
        self._report = report

    def _used(self) -> bool:
        return self._report.done()

    def _ended(self, exc: BaseException | None) -> bool:
        report = self._report
        if exc is None:
            if not report.done():
                report.set_result(None)
            return False
        if isinstance(exc, Exception):
            if not report.done():  # else the loop already gave this attempt up (deadline)
                report.set_result(exc)
            return True  # the failure goes to seawall: retried, or raised by `async for`
        report.cancel()  # cancelled, interrupted: end the loop, let it propagate
        return False


class _Channel:
    """What the helper task and the iterator share (the task never holds the iterator)."""

    def __init__(self) -> None:
        self.turns: asyncio.Queue[AttemptBlock] = asyncio.Queue()

    async def attempt(self, number: int) -> Attempt:
        report: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.turns.put_nowait(AttemptBlock(number, report))
        failure = await asyncio.shield(report)
        if failure is not None:
            raise failure
        return Attempt(None)


class Attempts:
    """``sw.attempts(...)``: an async iterator of attempts; see the module's doc."""

    def __init__(
        self,
        sw: Seawall,
        *,
        key: str,
        context: Mapping[str, Any] | None = None,
        policy: Policy | None = None,
        on: Retried | None = None,
    ) -> None:
        check_options("sw.attempts", key, policy, key_required=True)
        self._sw = sw
        self._key = key
        self._context = context
        self._policy = policy
        self._retry_if = retry_predicate(on, "sw.attempts")
        self._channel = _Channel()
        self._runner: asyncio.Task[Any] | None = None
        self._last: AttemptBlock | None = None
        self._done = False

    def __aiter__(self) -> Attempts:
        return self

    def __iter__(self) -> SyncRun:
        """The sync form: ``for attempt in sw.attempts(key=...): with attempt: ...``.

        Runs in this thread (``seawall.sync``): waits sleep it, the key's state
        is the one async calls share.
        """
        if self._runner is not None:
            msg = "sw.attempts(...) is already iterated with `async for`: make a new one"
            raise RuntimeError(msg)
        return sync.run(self._sw, self._spec())

    def _spec(self) -> CallSpec:
        sw = self._sw
        policy = self._policy or sw.policy_for_key(self._key)
        limit = policy.timeout.attempt  # a probe's turn ends at it all the same (Settle.lend)
        if limit is not None:  # cannot cut a block short: see the module doc
            policy = attrs.evolve(policy, timeout=attrs.evolve(policy.timeout, attempt=None))
        key = redact_key(self._key)
        return CallSpec(
            key=key,
            policy=policy,
            state=sw.state_for(key, policy),
            context=merge_context(self._context),
            llm=policy.llm,
            retry_if=self._retry_if,
            lend_for=limit,
        )

    def _start(self) -> asyncio.Task[Any]:
        spec = self._spec()
        return asyncio.get_running_loop().create_task(self._sw.run(spec, self._channel.attempt))

    async def __anext__(self) -> AttemptBlock:
        if self._done:
            raise StopAsyncIteration
        last = self._last
        if last is not None and not last._report.done():
            self._done = True
            self._cancel()
            msg = (
                f"attempt {last.number} was not reported: run each attempt's code "
                "inside `with attempt:` in the `async for` body"
            )
            raise RuntimeError(msg)
        runner = self._runner
        if runner is None:
            runner = self._runner = self._start()
        turns = self._channel.turns
        if turns.empty() and not runner.done():
            turn = asyncio.ensure_future(turns.get())
            try:
                await asyncio.wait({turn, runner}, return_when=asyncio.FIRST_COMPLETED)
            except BaseException:
                turn.cancel()
                self._cancel()
                raise
            if not turn.done():
                turn.cancel()
            elif not turn.cancelled():
                self._last = turn.result()
                return self._last
        if not turns.empty():
            self._last = turns.get_nowait()
            return self._last
        self._done = True
        try:
            runner.result()  # raises what the loop gave up with
        except StopAsyncIteration as stop:  # would end `async for` quietly: raised loudly
            raise loud_stop(stop) from stop
        raise StopAsyncIteration

    def _cancel(self) -> None:
        runner = self._runner
        if runner is not None and not runner.done():
            runner.cancel()

    def __del__(self) -> None:
        # Left by `break` (or an error) between attempts: stop the helper task,
        # which releases the breaker permit of a pending attempt.
        with contextlib.suppress(RuntimeError):  # the event loop is already closed
            self._cancel()
