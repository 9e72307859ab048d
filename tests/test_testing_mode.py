"""seawall.testing: test mode for users' suites makes waits instant and can cap attempts."""

from __future__ import annotations

import asyncio
import time

import pytest

import seawall
from seawall import testing

from ._helpers import Recorder, policy
from .conftest import status

SLOW = {"backoff": "constant", "jitter": "none", "base_delay": 30.0, "max_delay": 30.0}


def _failing() -> tuple[list[int], object]:
    calls: list[int] = []

    async def down() -> None:
        calls.append(1)
        raise ConnectionResetError("connection reset")

    return calls, down


async def test_waits_are_instant_in_test_mode() -> None:
    """Two 30 s backoffs take no time with test mode on, and are still reported as 30 s."""
    assert testing.is_testing()  # the autouse fixture turned it on
    rec = Recorder()
    sw = seawall.Seawall(policy(max_attempts=3, **SLOW), entrypoints=False, plugins=[rec])
    calls, down = _failing()
    task = asyncio.ensure_future(sw.call(down, key="slow"))  # type: ignore[arg-type]
    for _ in range(50):  # loop turns, not seconds: a real 30 s wait cannot end in 50 turns
        if task.done():
            break
        await asyncio.sleep(0)
    else:
        task.cancel()
        pytest.fail("the two 30 s waits were not instant: still waiting after 50 loop turns")
    with pytest.raises(ConnectionResetError):
        task.result()
    assert len(calls) == 3
    assert [d for d, _ in rec.delays()] == [30.0, 30.0]


async def test_attempts_cap(upstream, make_session) -> None:
    """set_testing(True, attempts=1) makes every policy try once."""
    up, server = upstream
    up.default = status(503)
    testing.set_testing(True, attempts=1)
    sw = seawall.Seawall(policy(max_attempts=5), entrypoints=False)
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 503
    assert up.hits == 1


async def test_mode_context_manager_restores_the_previous_state() -> None:
    """`with testing.mode(attempts=2)` caps inside the block only."""
    sw = seawall.Seawall(policy(max_attempts=4), entrypoints=False)
    calls, down = _failing()
    with testing.mode(attempts=2):
        with pytest.raises(ConnectionResetError):
            await sw.call(down, key="m")  # type: ignore[arg-type]
        assert len(calls) == 2
    calls.clear()
    with pytest.raises(ConnectionResetError):
        await sw.call(down, key="m")  # type: ignore[arg-type]
    assert len(calls) == 4
    assert testing.is_testing()


async def test_test_mode_off_really_waits() -> None:
    """With test mode off, the backoff is slept for real."""
    testing.set_testing(False)
    assert not testing.is_testing()
    sw = seawall.Seawall(
        policy(max_attempts=2, backoff="constant", jitter="none", base_delay=0.05, max_delay=0.05),
        entrypoints=False,
    )
    calls, down = _failing()
    started = time.monotonic()
    async with asyncio.timeout(5):
        with pytest.raises(ConnectionResetError):
            await sw.call(down, key="real")  # type: ignore[arg-type]
    assert time.monotonic() - started >= 0.05
    assert len(calls) == 2


async def test_mode_works_when_test_mode_was_off() -> None:
    """testing.mode() turns test mode on for the block and off again after."""
    testing.set_testing(False)
    with testing.mode():
        assert testing.is_testing()
    assert not testing.is_testing()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_attempt_caps_are_refused(bad) -> None:
    """attempts must be a whole number >= 1 or None."""
    with pytest.raises(ValueError, match="whole number"):
        testing.set_testing(True, attempts=bad)
