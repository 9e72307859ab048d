"""Settling an attempt: its verdict, the key's books, then stop or the wait before the next.

``Settle`` is the part of ``Loop`` (``seawall._path.loop``) that both drivers
call once an attempt has ended (the async loop, and the sync one in
``seawall._path.threads``). It takes the key's lock itself, and calls no
plugin while it holds it (docs/architecture.md, "Plugins are called outside
the key's lock"):

1. before the lock: the classification (``seawall_classify``) and the retry
   rules (``on=``'s predicate);
2. under the lock: the breaker's and the cooldown's verdict, the counters,
   and the give-up when the rules stop; what there is to tell (events, log
   lines, breaker transitions) waits in the observer's list;
3. after it: the observer tells it, in the order it came;
4. for a retry, the backoff (``seawall_backoff``) outside the lock, then a
   second locked section that checks the deadline and spends the budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from seawall._path.giveup import GiveUp, describe
from seawall._path.observer import Observer
from seawall._path.rules import StopReason, why_stop
from seawall._path.spec import Attempt, BrokenBody
from seawall._path.verdict import Verdicts, outcome_of
from seawall.breaker import CLOSED_PERMIT
from seawall.errors import AttemptRecord
from seawall.outcome import Classification, Outcome
from seawall.plugins.hooks import Hooks

__all__ = ["Settle"]

if TYPE_CHECKING:
    from seawall._path.loop import CallState

#: What ``Settle._judge`` finds: the outcome (``None`` for a plain success), the
#: classification, the history line and the stop reason (failures only), and what
#: ``on=``'s predicate raised.
_Judgement = tuple[
    Outcome | None, Classification, AttemptRecord | None, StopReason | None, BaseException | None
]


class Settle(Verdicts):
    """What an ended attempt leads to (a part of ``Loop``)."""

    clock: Callable[[], float]
    hooks: Hooks
    observer: Observer
    giveup: GiveUp

    def settle(self, call: CallState, number: int) -> float | None:
        """Attempt ``number`` ended (``call.result``/``call.exc``): its verdict, then what next.

        ``None``: the call is over and ``call.value`` is its answer (or this
        raises what the call gives up with); else the seconds to wait before
        the next attempt. Call without the key's lock: this takes it, around
        the books only.
        """
        spec = call.spec
        result = call.result
        if (
            call.exc is None
            and result is not None
            and (result.status is None or result.status < 400)
            and not self.observer.observed
            and not spec.llm
            and not (call.by_deadline and call.cut)
            and call.permit is CLOSED_PERMIT  # a probe's success may close the breaker: told
            and not self.hooks.custom("seawall_classify")
        ):
            # The plain success, unobserved: what the steps below do for it (SUCCESS,
            # no Outcome; _record's cooldown and breaker; observer.finish's counters),
            # without their calls, and with nothing to tell after the lock.
            state = spec.state
            lock = state.lock
            lock.acquire()  # not `with`: its __enter__ parses arguments (~1k instructions)
            try:
                state.cooldown.observe(None, success=True, sent_at=call.t0)
                breaker = state.breaker
                if not breaker.quiet:
                    breaker.record(CLOSED_PERMIT, failure=False)
                stats = state.stats
                if number == 1:
                    stats.first_try(call.ended - call.started)  # the attempt, the call, latency
                else:
                    stats.attempted()
                    stats.observe_call(call.ended - call.started, True)
            finally:
                lock.release()
            call.value = result.value
            return None
        return self._settle_fully(call, number)

    def _settle_fully(self, call: CallState, number: int) -> float | None:
        """``settle`` for anything but the plain, unobserved success."""
        spec = call.spec
        result, exc = call.result, call.exc
        elapsed = call.ended - call.t0
        cut = call.cut
        answered = None
        if isinstance(exc, BrokenBody):
            answered, exc = exc.status, exc.cause
        try:
            outcome, c, record, stop, on_error = self._judge(call, number, exc, answered, elapsed)
        except BaseException:
            # Nothing before the books may keep the permit (a half-open probe's: the key
            # would be refused for ever) or leave the attempt counted in flight.
            self.abandon(call)
            raise
        if on_error is not None:
            if not isinstance(on_error, Exception):  # an interrupt: the verdict, no more
                self._verdict_only(call, c, result)
                raise on_error
            stop = StopReason.ON_RAISED  # the call ends as any other; then on_error is raised
        state = spec.state
        observer = self.observer
        lock = state.lock
        lock.acquire()
        try:
            state.stats.attempted()
            if cut:
                state.breaker.release(call.permit)
                state.cooldown.settle()
            else:
                self._record(spec, call.permit, c, result, call.t0)
            if observer.observed:
                observer.attempt(spec, number, result, exc, c, elapsed)
            if record is None:
                observer.finish(
                    spec, call.ended - call.started, c, result, number, None, observer.observed
                )
                call.value = result.value if result is not None else None
                return None
            call.history.append(record)
            observer.failed(spec, record, c, cut=cut)
            if stop is None and state.breaker.is_open():
                stop = StopReason.BREAKER
            if stop is not None:
                try:
                    call.value = self.giveup.stop(
                        spec,
                        stop,
                        call.started,
                        c,
                        result,
                        exc,
                        call.history,
                        cut=cut,
                        status=answered,
                        permit=call.permit,
                    )
                except Exception as given_up:
                    if on_error is None:
                        raise
                    raise on_error from given_up  # the caller's own error, chained to the failure
                return None
        finally:
            lock.release()
            observer.flush()
        assert outcome is not None
        return self._retry(call, number, outcome, c, result, exc)

    def _judge(
        self,
        call: CallState,
        number: int,
        exc: Exception | None,
        answered: int | None,
        elapsed: float,
    ) -> _Judgement:
        """Before the lock: the attempt's classification (plugins), its line in the
        history, and, for a failure, whether the rules stop the call. Last, what
        ``on=``'s predicate raised, if it did (it is the caller's code)."""
        spec, result = call.spec, call.result
        outcome, c = self._classify(spec, number, result, exc, elapsed)  # plugins: no lock
        if answered is not None:
            # The upstream answered: a body lost afterwards is not its failure.
            c = attrs.evolve(c, retryable=False, counts_as_failure=False)
        if c.is_success:
            return outcome, c, None, None, None  # only failures need the history
        record = AttemptRecord(number, describe(result, exc), c.category.value, elapsed)
        if call.cut:
            return outcome, c, record, StopReason.DEADLINE, None
        if answered is not None:
            return outcome, c, record, StopReason.ANSWERED, None
        if outcome is None:
            outcome = outcome_of(spec, number, result, exc, elapsed)
        # on=, a predicate of the caller's, may be asked: not under the lock; whether
        # the breaker is open is asked under it, after this verdict
        try:
            stop = why_stop(
                spec, number, call.max_attempts, outcome, c, call.retried, breaker=False
            )
        except BaseException as on_error:
            return outcome, c, record, None, on_error
        return outcome, c, record, stop, None

    def unspend(self, call: CallState) -> None:
        """The call ended (cancelled, interrupted, refused) between spending a retry of the
        budget and sending it: the token goes back (``RetryBudget.give_back``)."""
        spent, call.spent = call.spent, None
        if spent is not None:
            state = call.spec.state
            with state.lock:
                state.budget.give_back(spent)

    def lend(self, call: CallState, limit: float | None = None) -> None:
        """A probe admitted to an attempt that nothing can cut short (a thread's, a block's
        body) keeps its turn until its time limit at most (``Breaker.lend``): ``limit``, or
        the policy's own that the block forms do not apply (``CallSpec.lend_for``), the sooner.
        """
        permit = call.permit
        if not permit.probe:
            return
        spec = call.spec
        turn = spec.lend_for
        if limit is not None and (turn is None or limit < turn):
            turn = limit
        if turn is not None:
            with spec.state.lock:
                spec.state.breaker.lend(permit, call.t0 + turn)

    def abandon(self, call: CallState) -> None:
        """The attempt was cancelled or interrupted: give its permit back, no verdict."""
        state = call.spec.state
        with state.lock:
            state.breaker.release(call.permit)
            state.cooldown.settle()

    def _verdict_only(self, call: CallState, c: Classification, result: Attempt | None) -> None:
        """The attempt's verdict to the books, for a call that ends by an error of its own."""
        state = call.spec.state
        lock = state.lock
        lock.acquire()
        try:
            state.stats.attempted()
            self._record(call.spec, call.permit, c, result, call.t0)
        finally:
            lock.release()
            self.observer.flush()

    def _retry(
        self,
        call: CallState,
        number: int,
        outcome: Outcome,
        c: Classification,
        result: Attempt | None,
        exc: Exception | None,
    ) -> float | None:
        """The rules allow another attempt: its wait, if the deadline and the budget allow it."""
        spec = call.spec
        state = spec.state
        history, permit = call.history, call.permit
        delay, why = self.delay(spec, number, outcome, c)  # plugins: no lock
        observer = self.observer
        giveup = self.giveup
        lock = state.lock
        lock.acquire()
        try:
            if call.deadline_at is not None and self.clock() + delay >= call.deadline_at:
                call.value = giveup.stop(
                    spec, StopReason.DEADLINE, call.started, c, result, exc, history, permit=permit
                )
                return None
            if not state.budget.try_spend():
                observer.reject(spec, "budget", None)
                call.value = giveup.stop(
                    spec, StopReason.BUDGET, call.started, c, result, exc, history, permit=permit
                )
                return None
            call.spent = state.budget.epoch  # given back if the retry is never sent
            call.retried[c.category] = call.retried.get(c.category, 0) + 1
            state.stats.retries += 1
            history[-1] = attrs.evolve(history[-1], delay=delay)
            observer.waiting(spec, number, delay, why, c.category)
        finally:
            lock.release()
            observer.flush()
        if result is not None and spec.discard is not None:
            spec.discard(result.value)  # the adapter's (a response's release): no lock
        return delay
