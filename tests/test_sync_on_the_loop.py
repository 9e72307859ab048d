"""A sync form called on the event loop's thread (a protected ``def`` inside an ``async def``
handler) sleeps that thread between attempts, and every task on the loop waits with it:
seawall says so, once per ``Seawall``, with what to do instead."""

from __future__ import annotations

import asyncio
import logging

import pytest

import seawall

from ._helpers import Clock, policy


@pytest.fixture
def real_waits() -> object:
    """The injected sleep is called (test mode makes sync waits instant)."""
    seawall.testing.set_testing(False)
    yield
    seawall.testing.set_testing(True)


def flaky_fn() -> object:
    answers = iter([ConnectionResetError("connection reset by peer"), "ok"] * 3)

    def fetch() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    return fetch


@pytest.mark.usefixtures("real_waits")
async def test_a_wait_on_the_event_loops_thread_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    sw = seawall.Seawall(policy(max_attempts=2), entrypoints=False, clock=clock, sleep=clock.sleep)
    fetch = sw.protect(key="users")(flaky_fn())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="seawall.sync"):
        assert fetch() == "ok"  # on the loop's thread: this test's
        assert fetch() == "ok"
    assert len(clock.slept) == 2
    (record,) = [r for r in caplog.records if r.name == "seawall.sync"]
    assert "event loop's thread" in record.getMessage()
    assert "asyncio.to_thread" in record.getMessage()


@pytest.mark.usefixtures("real_waits")
async def test_a_wait_in_a_thread_is_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    sw = seawall.Seawall(policy(max_attempts=2), entrypoints=False, clock=clock, sleep=clock.sleep)
    fetch = sw.protect(key="users")(flaky_fn())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="seawall.sync"):
        assert await asyncio.to_thread(fetch) == "ok"
    assert clock.slept
    assert not [r for r in caplog.records if r.name == "seawall.sync"]
