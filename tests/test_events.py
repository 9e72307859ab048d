"""``seawall_event``: every kind of event, its fields, and none built without a listener."""

from __future__ import annotations

import attrs
import pytest

import seawall
import seawall._path.observer
from seawall import events
from seawall.policy import BreakerPolicy, BudgetPolicy, Policy, RetryPolicy, TimeoutPolicy

from .conftest import status


class Recorder:
    """A plugin keeping every event it sees."""

    def __init__(self) -> None:
        self.events: list[events.Event] = []

    @seawall.hookimpl
    def seawall_event(self, event: events.Event) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[events.Event]:
        return [e for e in self.events if e.kind == kind]


def _sw(rec: Recorder, **policy: object) -> seawall.Seawall:
    return seawall.Seawall(Policy(**policy), plugins=[rec], entrypoints=False)  # type: ignore[arg-type]


async def test_attempt_retry_and_call_events_describe_a_503_then_200(upstream, make_session):
    """A 503 then 200 gives two attempt events, a backoff retry event and one call event."""
    up, server = upstream
    up.then(status(503))
    rec = Recorder()
    sw = _sw(rec)
    url = server.make_url("/v1/x").with_query(api_key="SECRET-K", page="2")
    async with make_session(sw) as session, session.get(url) as resp:
        assert resp.status == 200
    first, second = rec.of("attempt")
    assert isinstance(first, events.AttemptFinished)
    assert (first.method, first.status, first.category, first.exception) == (
        "GET",
        503,
        "server",
        None,
    )
    assert first.attempt == 1
    assert first.elapsed >= 0
    assert "SECRET-K" not in first.url
    assert "api_key=***" in first.url
    assert "page=2" in first.url
    assert (second.status, second.category) == (200, "success")  # type: ignore[attr-defined]
    (retry,) = rec.of("retry")
    assert isinstance(retry, events.RetryScheduled)
    assert retry.reason == "backoff"
    assert 0 <= retry.delay <= 0.1
    assert retry.category == "server"
    (call,) = rec.of("call")
    assert isinstance(call, events.CallFinished)
    assert (call.attempts, call.outcome, call.status, call.stopped_because) == (
        2,
        "success",
        200,
        None,
    )
    assert call.elapsed >= first.elapsed


async def test_attempt_event_names_the_exception_class_only():
    """An attempt that raised names the exception class, never its message."""
    rec = Recorder()
    sw = _sw(rec, retry=RetryPolicy(max_attempts=1))

    async def boom() -> None:
        raise ConnectionResetError("token=SECRET-T reset")

    with pytest.raises(ConnectionResetError):
        await sw.call(boom, key="svc")
    (attempt,) = rec.of("attempt")
    assert attempt.exception == "ConnectionResetError"  # type: ignore[attr-defined]
    assert attempt.category == "network"
    assert attempt.status is None
    (call,) = rec.of("call")
    assert call.outcome == "network"
    assert call.stopped_because == "attempts"


async def test_retry_after_and_cooldown_are_named_as_the_reason(upstream, make_session):
    """A 429 with Retry-After schedules a retry for ``retry-after``, and the key's cooldown."""
    up, server = upstream
    up.then(status(429, **{"Retry-After": "7"}))
    rec = Recorder()
    now = [1000.0]
    sw = seawall.Seawall(plugins=[rec], entrypoints=False, clock=lambda: now[0])
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 200
    reasons = [(e.reason, e.delay) for e in rec.of("retry")]  # type: ignore[attr-defined]
    assert reasons == [("retry-after", 7.0), ("cooldown", 7.0)]


async def test_breaker_transition_and_rejection_events(upstream, make_session):
    """Tripping the breaker emits closed->open with the failure rate, then a breaker rejection."""
    up, server = upstream
    up.default = status(500)
    rec = Recorder()
    sw = _sw(
        rec,
        retry=RetryPolicy(max_attempts=1),
        # Two failed calls, before minimum_calls; probe_share=0: the third is refused at
        # once, however slowly a loaded host runs the two before it.
        breaker=BreakerPolicy(failure_threshold=2, probe_share=0),
    )
    async with make_session(sw) as session:
        for _ in range(2):
            async with session.get(server.make_url("/")) as resp:
                assert resp.status == 500
        with pytest.raises(seawall.CircuitOpenError):
            await session.get(server.make_url("/?sig=SECRET-S"))
    (move,) = rec.of("breaker")
    assert isinstance(move, events.BreakerTransition)
    assert (move.old, move.new, move.failure_rate, move.consecutive_failures) == (
        "closed",
        "open",
        1.0,
        2,
    )
    (rejected,) = rec.of("rejected")
    assert isinstance(rejected, events.Rejected)
    assert rejected.reason == "breaker"
    assert rejected.retry_after is not None
    assert rejected.retry_after > 0
    assert rejected.method == "GET"
    assert "sig=***" in rejected.url
    assert "SECRET-S" not in rejected.url
    assert up.hits == 2


async def test_budget_exhausted_emits_a_rejection_and_a_budget_event(upstream, make_session):
    """An empty retry budget refuses the retry: a budget rejection and a BudgetExhausted."""
    up, server = upstream
    up.default = status(503)
    rec = Recorder()
    sw = _sw(rec, budget=BudgetPolicy(ratio=0.0, min_retries_per_second=0.0))
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 503
    assert [e.reason for e in rec.of("rejected")] == ["budget"]  # type: ignore[attr-defined]
    (budget,) = rec.of("budget")
    assert isinstance(budget, events.BudgetExhausted)
    assert budget.balance < 1
    assert rec.of("call")[0].stopped_because == "budget"  # type: ignore[attr-defined]
    assert up.hits == 1


async def test_cooldown_longer_than_the_deadline_is_rejected(upstream, make_session):
    """During a 429 cooldown longer than the deadline, a call is rejected for ``cooldown``."""
    up, server = upstream
    up.then(status(429, **{"Retry-After": "30"}))
    rec = Recorder()
    now = [50.0]
    sw = seawall.Seawall(
        Policy(timeout=TimeoutPolicy(deadline=5.0)),
        plugins=[rec],
        entrypoints=False,
        clock=lambda: now[0],
    )
    async with make_session(sw) as session:
        async with session.get(server.make_url("/")) as resp:
            assert resp.status == 429  # the wait does not fit the deadline: returned as is
        with pytest.raises(seawall.DeadlineExceededError):
            await session.get(server.make_url("/"))
    assert [e.reason for e in rec.of("rejected")] == ["cooldown"]  # type: ignore[attr-defined]
    assert up.hits == 1


async def test_passed_deadline_is_rejected():
    """A call whose inbound deadline has already passed is rejected for ``deadline``."""
    rec = Recorder()
    sw = _sw(rec)

    async def never() -> None:
        raise AssertionError("must not be called")

    with seawall.deadline(1e-9), pytest.raises(seawall.DeadlineExceededError):
        await sw.call(never, key="late")
    assert [e.reason for e in rec.of("rejected")] == ["deadline"]  # type: ignore[attr-defined]


def test_events_are_frozen():
    """Events cannot be changed by a plugin."""
    event = events.Rejected(key="k", timestamp=1.0, reason="breaker")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.reason = "x"  # type: ignore[misc]
    assert event.as_dict()["kind"] == "rejected"


_KINDS = (
    "AttemptFinished",
    "BreakerTransition",
    "BudgetExhausted",
    "CallFinished",
    "Rejected",
    "RetryScheduled",
)


async def _every_kind(sw: seawall.Seawall, server, make_session) -> None:
    async with make_session(sw) as session:
        for _ in range(3):
            async with session.get(server.make_url("/")) as resp:
                assert resp.status in (200, 503)
        with pytest.raises(seawall.CircuitOpenError):
            await session.get(server.make_url("/"))


@pytest.mark.parametrize("listening", [False, True])
async def test_no_event_is_built_when_nobody_listens(
    upstream, make_session, monkeypatch, listening
):
    """Without a seawall_event plugin the engine constructs no event object at all."""
    up, server = upstream
    up.then(status(200))
    up.default = status(503)
    built: list[str] = []
    for name in _KINDS:
        real = getattr(events, name)

        def counting(*args: object, _real: type = real, **kwargs: object) -> object:
            built.append(_real.__name__)
            return _real(*args, **kwargs)

        monkeypatch.setattr(seawall._path.observer, name, counting)
    plugins = [Recorder()] if listening else []
    sw = seawall.Seawall(
        Policy(
            # Calls 2 and 3 fail: 4 is rejected (at once: probe_share=0, see above).
            breaker=BreakerPolicy(failure_threshold=2, probe_share=0),
            budget=BudgetPolicy(ratio=0.0, min_retries_per_second=0.1),  # one retry in all
        ),
        plugins=plugins,
        entrypoints=False,
    )
    await _every_kind(sw, server, make_session)
    if listening:
        assert set(built) == set(_KINDS)  # the scenario does reach every kind
    else:
        assert built == []
