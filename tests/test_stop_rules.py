"""When the retry loop stops, and how long it waits: the rules one by one (test mode, no waits).

The documented promises: "the wait is the larger of the backoff and
Retry-After", "``retry_after_max=0`` never waits", a wait hint may have a
fraction, and a 429's cooldown is capped at ``retry_after_max``.
"""

from __future__ import annotations

from typing import Any

import pytest

import seawall
from seawall._path.rules import StopReason, why_stop
from seawall._path.spec import CallSpec
from seawall.outcome import Category, Classification, Outcome

from ._helpers import Recorder, policy
from .conftest import status

CONSTANT: dict[str, Any] = {"backoff": "constant", "jitter": "none"}


async def _get(upstream, make_session, rec: Recorder, *, method: str = "GET", **retry: Any) -> int:
    _, server = upstream
    sw = seawall.Seawall(policy(**retry), entrypoints=False, plugins=[rec])
    async with (
        make_session(sw) as session,
        session.request(method, server.make_url("/")) as resp,
    ):
        await resp.read()
        return resp.status


def _stopped(rec: Recorder) -> str | None:
    [call] = rec.of("call")
    return call.stopped_because


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("0.5", (2.0, "backoff")), ("2", (2.0, "backoff")), ("3", (3.0, "retry-after"))],
)
async def test_the_wait_is_the_larger_of_backoff_and_retry_after(
    upstream, make_session, retry_after, expected
) -> None:
    """A shorter Retry-After never shortens the backoff; a longer one replaces it."""
    up, _ = upstream
    up.then(status(503, **{"Retry-After": retry_after}))
    rec = Recorder()
    assert await _get(upstream, make_session, rec, base_delay=2.0, **CONSTANT) == 200
    assert rec.delays() == [expected]


async def test_a_fractional_retry_after_is_believed(upstream, make_session) -> None:
    up, _ = upstream
    up.then(status(503, **{"Retry-After": "1.5"}))
    rec = Recorder()
    assert await _get(upstream, make_session, rec, base_delay=0.1, **CONSTANT) == 200
    assert rec.delays() == [(1.5, "retry-after")]


async def test_retry_after_may_exceed_max_delay(upstream, make_session) -> None:
    up, _ = upstream
    up.then(status(503, **{"Retry-After": "7"}))
    rec = Recorder()
    assert await _get(upstream, make_session, rec, max_delay=1.0, **CONSTANT) == 200
    assert rec.delays() == [(7.0, "retry-after")]


@pytest.mark.parametrize("retry_after", ["0.001", "1", "30"])
async def test_retry_after_max_zero_never_waits_for_the_server(
    upstream, make_session, retry_after
) -> None:
    """With retry_after_max=0 any asked-for wait returns the response at once."""
    up, _ = upstream
    up.default = status(503, **{"Retry-After": retry_after})
    rec = Recorder()
    assert await _get(upstream, make_session, rec, retry_after_max=0.0) == 503
    assert up.hits == 1
    assert rec.delays() == []
    assert "retry_after_max=0" in (_stopped(rec) or "")


async def test_retry_after_max_zero_still_retries_an_immediate_hint(upstream, make_session) -> None:
    """``Retry-After: 0`` asks for no wait, so it is retried after the backoff."""
    up, _ = upstream
    up.then(status(503, **{"Retry-After": "0"}))
    rec = Recorder()
    assert await _get(upstream, make_session, rec, retry_after_max=0.0, **CONSTANT) == 200
    assert rec.delays() == [(0.1, "backoff")]


async def test_a_wait_equal_to_retry_after_max_is_honoured(upstream, make_session) -> None:
    up, _ = upstream
    up.then(status(503, **{"Retry-After": "5"}))
    rec = Recorder()
    assert await _get(upstream, make_session, rec, retry_after_max=5.0) == 200
    assert rec.delays() == [(5.0, "retry-after")]


async def test_a_429_cooldown_is_capped_at_retry_after_max(upstream, make_session) -> None:
    """A 429 asking for more than retry_after_max cools the key down for at most the cap."""
    up, server = upstream
    up.default = status(429, **{"Retry-After": "300"})
    sw = seawall.Seawall(policy(retry_after_max=4.0), entrypoints=False)
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 429
    assert up.hits == 1  # above the cap: not retried
    [state] = sw.health()["keys"].values()
    assert 0.0 < state["cooldown"] <= 4.0


async def test_attempts_stop_at_max_attempts(upstream, make_session) -> None:
    up, _ = upstream
    up.default = status(503)
    rec = Recorder()
    assert await _get(upstream, make_session, rec, max_attempts=4, **CONSTANT) == 503
    assert up.hits == 4
    assert _stopped(rec) == "attempts"


async def test_failures_beyond_two_double_the_wait_up_to_max_delay(upstream, make_session) -> None:
    """The third failed attempt of a call (with no earlier failures) waits double."""
    up, _ = upstream
    up.default = status(503)
    rec = Recorder()
    status_ = await _get(
        upstream, make_session, rec, max_attempts=5, base_delay=1.0, max_delay=1.5, **CONSTANT
    )
    assert status_ == 503
    assert rec.delays() == [(1.0, "backoff"), (1.0, "backoff"), (1.5, "backoff"), (1.5, "backoff")]


async def test_previous_failures_count_towards_doubling() -> None:
    """``previous_failures`` in the context makes the first retry wait double."""
    rec = Recorder()
    sw = seawall.Seawall(
        policy(max_attempts=2, base_delay=1.0, **CONSTANT), entrypoints=False, plugins=[rec]
    )
    tries = 0

    async def flaky() -> str:
        nonlocal tries
        tries += 1
        if tries == 1:
            raise ConnectionResetError("reset")
        return "ok"

    assert await sw.call(flaky, key="k", context={"previous_failures": 2}) == "ok"
    assert rec.delays() == [(2.0, "backoff")]
    tries = 0
    assert await sw.call(flaky, key="k", context={"previous_failures": 1}) == "ok"
    assert rec.delays()[-1] == (1.0, "backoff")
    tries = 0
    assert await sw.call(flaky, key="k", context={"previous_failures": "many"}) == "ok"
    assert rec.delays()[-1] == (1.0, "backoff")  # not a number: counted as none


async def test_a_backoff_plugin_answer_is_capped_at_max_delay() -> None:
    class Slow:
        @seawall.hookimpl
        def seawall_backoff(self, attempt: int) -> float:
            return 50.0

    rec = Recorder()
    sw = seawall.Seawall(
        policy(max_attempts=2, max_delay=3.0), entrypoints=False, plugins=[rec, Slow()]
    )

    async def down() -> None:
        raise ConnectionResetError("reset")

    with pytest.raises(ConnectionResetError):
        await sw.call(down, key="k")
    assert rec.delays() == [(3.0, "backoff")]


async def test_a_category_outside_retry_on_stops(upstream, make_session) -> None:
    up, _ = upstream
    up.default = status(503)
    rec = Recorder()
    only = {seawall.Category.NETWORK}
    assert await _get(upstream, make_session, rec, retry_on=only) == 503
    assert up.hits == 1
    assert _stopped(rec) == "server is not in retry_on"


async def test_x_should_retry_true_overrides_retry_on(upstream, make_session) -> None:
    up, _ = upstream
    up.then(status(503, **{"x-should-retry": "true"}))
    rec = Recorder()
    assert await _get(upstream, make_session, rec, retry_on=set()) == 200
    assert up.hits == 2


async def test_a_not_retryable_answer_stops(upstream, make_session) -> None:
    up, _ = upstream
    up.default = status(400)
    rec = Recorder()
    assert await _get(upstream, make_session, rec) == 400
    assert up.hits == 1
    assert _stopped(rec) == "not retryable"


async def test_a_conflict_is_retried_once(upstream, make_session) -> None:
    up, _ = upstream
    up.default = status(409)
    rec = Recorder()
    assert await _get(upstream, make_session, rec, max_attempts=5) == 409
    assert up.hits == 2
    assert _stopped(rec) == "conflict is retried at most 1 time(s)"


async def test_a_post_is_not_retried(upstream, make_session) -> None:
    up, _ = upstream
    up.default = status(503)
    rec = Recorder()
    assert await _get(upstream, make_session, rec, method="POST") == 503
    assert up.hits == 1
    assert "not idempotent" in (_stopped(rec) or "")


async def test_an_open_breaker_stops_the_retries(upstream, make_session) -> None:
    up, server = upstream
    up.default = status(503)
    rec = Recorder()
    sw = seawall.Seawall(
        seawall.Policy(
            retry=seawall.RetryPolicy(max_attempts=5),
            breaker=seawall.BreakerPolicy(minimum_calls=1, failure_rate=1.0),
            budget=seawall.BudgetPolicy(enabled=False),
        ),
        entrypoints=False,
        plugins=[rec],
    )
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 503
    assert up.hits == 1
    assert _stopped(rec) == "breaker"


def _spec(pol: seawall.Policy) -> CallSpec:
    """A call's spec for key ``k`` under ``pol``, its state on a clock that stands still."""
    sw = seawall.Seawall(pol, entrypoints=False, clock=lambda: 100.0)
    return CallSpec(key="k", policy=pol, state=sw.state_for("k", pol), context={})


@pytest.mark.parametrize("trip", [False, True])
def test_the_breaker_rule_is_asked_unless_left_out(trip: bool) -> None:
    """``why_stop``'s last rule: an open breaker stops a retry that every other rule
    allows. It is asked by default (``seawall classify``) and left out with
    ``breaker=False`` (the retry loop asks it under the key's lock, after the verdict)."""
    spec = _spec(
        seawall.Policy(
            breaker=seawall.BreakerPolicy(failure_threshold=1, minimum_calls=1, window=1)
        )
    )
    breaker = spec.state.breaker
    if trip:
        permit = breaker.admit()
        assert permit is not None
        breaker.record(permit, failure=True)
    assert breaker.is_open() is trip
    c = Classification(category=Category.SERVER, retryable=True)
    outcome = Outcome(key="k", status=503)
    asked = why_stop(spec, 1, 3, outcome, c, {})
    assert asked is (StopReason.BREAKER if trip else None)
    assert why_stop(spec, 1, 3, outcome, c, {}, breaker=False) is None


def test_a_classification_that_allows_no_retry_stops_the_first_time() -> None:
    """``max_retries=0`` (a classifier plugin's "retryable, but not by us"): retried
    enough already at the first failure, before the category was ever retried."""
    spec = _spec(seawall.Policy())
    c = Classification(category=Category.SERVER, retryable=True, max_retries=0)
    outcome = Outcome(key="k", status=503)
    assert why_stop(spec, 1, 3, outcome, c, {}) is StopReason.RETRIED_ENOUGH
    once = Classification(category=Category.SERVER, retryable=True, max_retries=1)
    assert why_stop(spec, 1, 3, outcome, once, {}) is None
    assert why_stop(spec, 2, 3, outcome, once, {Category.SERVER: 1}) is StopReason.RETRIED_ENOUGH
