"""Plugins that answer garbage: the caller's request still completes with the built-in answer."""

from __future__ import annotations

import asyncio
import math
import socket
from typing import Any

import aiohttp
import pytest

import seawall
from seawall import Category, Classification, Severity

from ._helpers import Recorder, policy
from .conftest import status

#: Classifications whose fields have types the request path cannot use.
GARBAGE: dict[str, dict[str, Any]] = {
    "category str": {"category": "server", "retryable": True},
    "severity str": {"category": Category.SERVER, "severity": "high", "retryable": True},
    "severity int": {"category": Category.SERVER, "severity": 99, "retryable": True},
    "retryable str": {"category": Category.SERVER, "retryable": "no"},
    "max_retries str": {"category": Category.SERVER, "retryable": True, "max_retries": "2"},
    "max_retries negative": {"category": Category.SERVER, "retryable": True, "max_retries": -1},
    "retry_after str": {"category": Category.SERVER, "retryable": True, "retry_after": "5"},
    "retry_after nan": {
        "category": Category.RATE_LIMIT,
        "retryable": True,
        "retry_after": math.nan,
    },
    "retry_after negative": {"category": Category.SERVER, "retryable": True, "retry_after": -5.0},
    "reason bytes": {"category": Category.SERVER, "retryable": True, "reason": b"x"},
    "reason None": {"category": Category.SERVER, "retryable": True, "reason": None},
    "escalate str": {"category": Category.AUTHENTICATION, "escalate": "yes", "reason": "401"},
}


class GarbageClassifier:
    """Answers every outcome with one malformed ``Classification``."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    @seawall.hookimpl
    def seawall_classify(self, outcome: seawall.Outcome) -> Classification:
        return Classification(**self.fields)


@pytest.mark.parametrize("case", sorted(GARBAGE))
async def test_a_classification_with_fields_of_the_wrong_type_is_a_fault(
    case: str, upstream, make_session
) -> None:
    """The caller gets the upstream's answer as the built-ins judge it; the plugin is counted."""
    up, server = upstream
    up.default = status(503)
    sw = seawall.Seawall(
        policy(max_attempts=3),
        entrypoints=False,
        plugins=[GarbageClassifier(GARBAGE[case]), Recorder()],
    )
    async with make_session(sw) as session:
        for _ in range(2):
            async with session.get(server.make_url("/")) as resp:
                assert resp.status == 503
    assert up.hits == 6  # the built-in "503 is retryable" decided, every time
    faults = sw.health()["plugin_faults"]
    assert list(faults.values()) == [6]
    assert next(iter(faults)).endswith("GarbageClassifier.seawall_classify")


async def test_a_plain_def_classifier_returning_a_coroutine_is_a_fault_and_closed(
    upstream, make_session
) -> None:
    """A sync hook returning a coroutine is a fault; the coroutine is closed, never left to warn."""
    made: list[Any] = []

    class Forgot:
        @seawall.hookimpl
        def seawall_classify(self, outcome: seawall.Outcome) -> Any:
            async def later() -> None:
                return None

            made.append(later())
            return made[-1]

    up, server = upstream
    up.then(status(503))
    sw = seawall.Seawall(policy(max_attempts=3), entrypoints=False, plugins=[Forgot()])
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 200
    assert up.hits == 2
    assert all(c.cr_frame is None for c in made)  # closed
    assert sum(sw.health()["plugin_faults"].values()) == 2


def test_a_wrong_classification_is_named_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """The fault's log line says which field is wrong and that the built-in answer was used."""
    sw = seawall.Seawall(
        entrypoints=False,
        plugins=[GarbageClassifier({"category": "server", "severity": Severity.HIGH})],
    )
    found, by = sw.classify(seawall.Outcome(key="k", status=503))
    assert by is None
    assert found.category is Category.SERVER
    assert found.retryable
    [line] = [m for m in caplog.messages if "raised in seawall_classify" in m]
    assert "category='server' is not a seawall.Category" in line


@pytest.mark.parametrize(
    "answer", ["0.5", math.nan, math.inf, -1.0, True, [1.0], "coroutine"], ids=repr
)
async def test_a_backoff_answer_that_is_not_seconds_is_a_fault(
    answer: Any, upstream, make_session
) -> None:
    """The policy's backoff is used instead, within max_delay; a coroutine is closed."""
    made: list[Any] = []

    class Wrong:
        @seawall.hookimpl
        def seawall_backoff(self, attempt: int) -> Any:
            if answer == "coroutine":

                async def later() -> float:
                    return 1.0

                made.append(later())
                return made[-1]
            return answer

    up, server = upstream
    up.then(status(503), status(503))
    recorder = Recorder()
    sw = seawall.Seawall(
        policy(max_attempts=3, max_delay=2.0), entrypoints=False, plugins=[Wrong(), recorder]
    )
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 200
    assert [reason for _, reason in recorder.delays()] == ["backoff", "backoff"]
    assert all(0 <= delay <= 2.0 for delay, _ in recorder.delays())
    assert all(c.cr_frame is None for c in made)
    assert sum(sw.health()["plugin_faults"].values()) == 2


@pytest.mark.parametrize("kind", ["wrapper", "hookwrapper"])
def test_a_hook_wrapper_is_named_as_never_called(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """seawall calls each implementation itself: a wrapper would silently do nothing."""

    class Timing:
        @seawall.hookimpl(**{kind: True})
        def seawall_classify(self, outcome: seawall.Outcome) -> Any:
            return (yield)

    sw = seawall.Seawall(entrypoints=False, plugins=[Timing()])
    [warning] = [m for m in caplog.messages if "hook wrapper" in m]
    assert warning.endswith(
        "implements seawall_classify as a hook wrapper, which seawall never calls: make it "
        "a plain @seawall.hookimpl (tryfirst=True to be asked first)"
    )
    assert warning in sw.hooks.pm.warnings


async def test_an_event_hook_returning_a_coroutine_is_a_fault_and_closed(
    upstream, make_session
) -> None:
    """``return queue.put(event)`` in a plain def: counted as a fault, the coroutine closed."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    made: list[Any] = []

    class Forwarder:
        @seawall.hookimpl
        def seawall_event(self, event: Any) -> Any:
            made.append(queue.put(event))
            return made[-1]

    _up, server = upstream
    sw = seawall.Seawall(policy(), entrypoints=False, plugins=[Forwarder()])
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 200
    assert made
    assert all(c.cr_frame is None for c in made)
    [(name, count)] = sw.health()["plugin_faults"].items()
    assert name.endswith("Forwarder.seawall_event")
    assert count == len(made)


class Cancels:
    """Raises ``asyncio.CancelledError`` from a plain def hook: never a real cancellation."""

    @seawall.hookimpl
    def seawall_classify(self, outcome: seawall.Outcome) -> None:
        raise asyncio.CancelledError

    @seawall.hookimpl
    def seawall_backoff(self, attempt: int) -> None:
        raise asyncio.CancelledError

    @seawall.hookimpl
    def seawall_event(self, event: Any) -> None:
        raise asyncio.CancelledError


async def test_a_cancelled_error_raised_by_a_plugin_does_not_cancel_the_caller(
    upstream, make_session
) -> None:
    """It is isolated like any other fault: the request completes, the task is not cancelling."""
    up, server = upstream
    up.default = status(503)
    sw = seawall.Seawall(policy(max_attempts=3), entrypoints=False, plugins=[Cancels()])
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 503
    assert up.hits == 3
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    faults = sw.health()["plugin_faults"]
    assert {name.rsplit(".", 1)[1] for name in faults} == {
        "seawall_classify",
        "seawall_backoff",
        "seawall_event",
    }


class CallsEverythingASuccess:
    """Answers SUCCESS for every attempt, also for one that raised."""

    @seawall.hookimpl
    def seawall_classify(self, outcome: seawall.Outcome) -> Classification:
        return Classification(category=Category.SUCCESS, reason="all good")


class Declined(Exception):
    """The card was declined."""


async def test_a_success_for_an_attempt_that_raised_never_swallows_the_exception() -> None:
    """sw.call, call_sync, @sw.protect and sw.attempts() raise the function's exception:
    the plugin's success would have handed the caller None for a value never returned."""
    sw = seawall.Seawall(
        policy(max_attempts=2), entrypoints=False, plugins=[CallsEverythingASuccess()]
    )

    async def charge() -> str:
        raise Declined("card declined")

    def charge_sync() -> str:
        raise Declined("card declined")

    with pytest.raises(Declined):
        await sw.call(charge, key="payments")
    with pytest.raises(Declined):
        await asyncio.to_thread(sw.call_sync, charge_sync, key="payments")
    with pytest.raises(Declined):
        await sw.protect(key="payments")(charge)()

    def block_form() -> None:
        for attempt in sw.attempts(key="payments"):
            with attempt:
                charge_sync()

    with pytest.raises(Declined):
        block_form()
    faults = sw.health()["plugin_faults"]
    assert list(faults) == ["tests.test_hostile_plugins.CallsEverythingASuccess.seawall_classify"]


async def test_a_success_for_a_connection_error_is_not_handed_to_aiohttp(make_session) -> None:
    """Through the middleware: the built-in verdict stands (a seawall error chained to the
    connection error), not None handed back to aiohttp (an AttributeError inside it)."""
    sw = seawall.Seawall(
        policy(max_attempts=2), entrypoints=False, plugins=[CallsEverythingASuccess()]
    )
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    async with make_session(sw) as session:
        with pytest.raises(aiohttp.ClientConnectionError) as info:
            await session.get(f"http://127.0.0.1:{port}/")
    assert isinstance(info.value, seawall.SeawallError)


class SlowClassifier:
    """Blocks its caller: moves the hooks' clock ``seconds`` forward on each call (no sleep)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    @seawall.hookimpl
    def seawall_classify(self, outcome: seawall.Outcome) -> None:
        self.now += self.seconds  # what a blocking call inside the hook would cost


@pytest.mark.parametrize(("seconds", "slow"), [(0.25, True), (0.05, False)])
async def test_a_slow_plain_def_hook_is_named_once_in_the_log(
    seconds: float, slow: bool, upstream, make_session, caplog: pytest.LogCaptureFixture
) -> None:
    """A user's hook that blocks for SLOW_HOOK (0.1 s) or more stalls every request on the
    loop: it is named once in the log and counted on each slow call; its answer still counts."""
    up, server = upstream
    up.default = status(503)
    plugin = SlowClassifier(seconds)
    sw = seawall.Seawall(policy(max_attempts=2), entrypoints=False, plugins=[plugin])
    sw.hooks.clock = plugin.clock
    caplog.set_level("WARNING", logger="seawall.plugins")
    async with make_session(sw) as session:
        for _ in range(3):
            async with session.get(server.make_url("/")) as resp:
                assert resp.status == 503
    assert up.hits == 6  # deferred: the built-in "503 is retryable" decided
    named = [r for r in caplog.records if "SlowClassifier" in r.getMessage()]
    if not slow:
        assert not named
        assert not sw.hooks.slow
        return
    [record] = named
    assert "took 0.25 s in seawall_classify (reported once)" in record.getMessage()
    assert list(sw.hooks.slow.values()) == [6]
    assert not sw.hooks.faults
    sw.reset_metrics()
    assert not sw.hooks.slow


async def test_built_in_hooks_are_not_timed(upstream, make_session) -> None:
    """Only users' plugins are timed: with the built-ins alone the clock is never read."""
    up, server = upstream
    up.default = status(503)
    sw = seawall.Seawall(policy(max_attempts=2), entrypoints=False)
    read: list[float] = []

    def clock() -> float:
        read.append(0.0)
        return 0.0

    sw.hooks.clock = clock
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 503
    assert up.hits == 2
    assert read == []
