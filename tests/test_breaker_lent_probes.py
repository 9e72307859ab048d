"""Half-open probes that nothing can cut short on the event loop (fix/asyncprobe): the body of
``async with sw.breaker(key)`` and of the block form's ``with attempt`` runs in the caller's
task, so no attempt limit cuts it; a probe's turn ends at the limit all the same
(``Breaker.lend``). Real hung blocks (an ``asyncio.Event`` not set), an injected clock."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

import seawall
from tests._helpers import Clock
from tests.conftest import Upstream

#: The transitions of one opening and one recovery: no stale verdict moved the breaker.
ONE_RECOVERY = {"closed->open": 1, "open->half_open": 1, "half_open->closed": 1}


def _sw(clock: Clock, *, attempt: float | None = 5.0) -> seawall.Seawall:
    """One attempt a call, a breaker that opens on one failed call and probes after 10 s."""
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(failure_threshold=1, recovery_timeout=10.0, hold=0.0),
        timeout=seawall.TimeoutPolicy(attempt=attempt, deadline=None),
    )
    return seawall.Seawall(policy, entrypoints=False, clock=clock, sleep=clock.sleep)


async def _up() -> str:
    return "up"


async def _open_then_due(sw: seawall.Seawall, clock: Clock, key: str) -> None:
    with pytest.raises(ConnectionError):
        async with sw.breaker(key):
            raise ConnectionError("refused")
    assert sw.health()["keys"][key]["state"] == "open"
    clock.advance(11.0)  # past the recovery timeout (jittered down, never up)


def _guarded(
    sw: seawall.Seawall, key: str, until: asyncio.Event, *, fail: bool = False
) -> tuple[asyncio.Task[None], asyncio.Event]:
    """A task whose guarded block waits for ``until`` (a read without a timeout), then
    ends well or raises; and the event it sets once inside the block."""
    entered = asyncio.Event()

    async def block() -> None:
        async with sw.breaker(key):
            entered.set()
            await until.wait()
            if fail:
                raise ConnectionError("reset, late")

    return asyncio.create_task(block()), entered


async def _inside(task: asyncio.Task[Any], entered: asyncio.Event) -> None:
    """Wait until ``task`` is inside its block; raise at once what it raised instead (a
    refusal: ``CircuitOpenError``)."""
    inside = asyncio.ensure_future(entered.wait())
    await asyncio.wait({task, inside}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    inside.cancel()
    if task.done():
        task.result()
    assert entered.is_set()


def _transitions(sw: seawall.Seawall, key: str) -> dict[str, int]:
    return dict(sw.health()["keys"][key]["transitions"])


async def test_a_hung_guarded_probe_gives_its_turn_up_after_the_attempt_limit(
    upstream: tuple[Upstream, TestServer], make_session: Callable[..., aiohttp.ClientSession]
) -> None:
    """A block under ``sw.breaker(key)`` hung while it was the half-open breaker's probe: it
    held the key's only probe turn for as long as it hung, and the aiohttp middleware's
    requests (any caller of the key) were refused though the upstream had recovered. Its
    turn now ends at the attempt limit: the next request is the new probe, and closes it."""
    up, server = upstream
    clock = Clock()
    sw = _sw(clock)
    key = f"http://127.0.0.1:{server.port}"
    session = make_session(sw)
    await _open_then_due(sw, clock, key)

    first, entered = _guarded(sw, key, asyncio.Event())
    await _inside(first, entered)
    first.cancel()  # a probe cancelled within its limit gives its turn back at once
    with pytest.raises(asyncio.CancelledError):
        await first
    hung, entered = _guarded(sw, key, asyncio.Event())  # never set
    await _inside(hung, entered)
    try:
        with pytest.raises(seawall.CircuitOpenError):  # within its limit: the turn is its own
            await session.get(server.make_url("/"))
        assert up.hits == 0
        clock.advance(5.0)  # the probe's attempt limit has passed
        async with session.get(server.make_url("/")) as resp:
            assert resp.status == 200
        assert up.hits == 1
        assert sw.health()["keys"][key]["state"] == "closed"
        assert await sw.call(_up, key=key) == "up"
    finally:
        hung.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hung
    assert sw.health()["keys"][key]["state"] == "closed"
    assert sw.registry.view[key].cooldown.inflight == 0  # nothing left counted in flight
    assert _transitions(sw, key) == {
        "closed->open": 1,
        "open->half_open": 1,
        "half_open->closed": 1,
    }


async def test_a_hung_guarded_probes_late_success_does_not_close_the_breaker() -> None:
    """Past its limit, the hung probe's success is stale news: the new probe's verdict
    decides. Here the new probe fails: the breaker opens though the old one succeeded
    meanwhile (before, the new probe was refused and the old one's success closed it)."""
    clock = Clock()
    sw = _sw(clock)
    await _open_then_due(sw, clock, "k")
    late = asyncio.Event()
    hung, entered = _guarded(sw, "k", late)
    await _inside(hung, entered)
    clock.advance(5.0)
    probe, entered = _guarded(sw, "k", asyncio.Event(), fail=True)  # the new probe
    await _inside(probe, entered)
    late.set()
    await hung  # the old probe ends well
    assert sw.health()["keys"]["k"]["state"] == "half_open"  # not closed by stale news
    with pytest.raises(seawall.CircuitOpenError):  # the new probe is out: its turn
        await sw.call(_up, key="k")
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert sw.health()["keys"]["k"]["state"] == "half_open"
    assert await sw.call(_up, key="k") == "up"  # its cancelled turn went back: a third probe
    assert _transitions(sw, "k") == {
        "closed->open": 1,
        "open->half_open": 1,
        "half_open->closed": 1,
    }


async def test_a_hung_guarded_probes_late_failure_does_not_reopen_the_breaker() -> None:
    """Past its limit, a new probe closed the breaker; the hung block then fails. Its failure
    is about the upstream before the recovery: it neither reopens the breaker nor counts
    as a failed call of the closed one (``failure_threshold=1`` would open it)."""
    clock = Clock()
    sw = _sw(clock)
    await _open_then_due(sw, clock, "k")
    late = asyncio.Event()
    hung, entered = _guarded(sw, "k", late, fail=True)
    await _inside(hung, entered)
    clock.advance(5.0)
    assert await sw.call(_up, key="k") == "up"  # the new probe closes it
    late.set()
    with pytest.raises(ConnectionError):  # the block's error is still the caller's
        await hung
    books = sw.health()["keys"]["k"]
    assert books["state"] == "closed"
    assert books["consecutive_failures"] == 0
    assert _transitions(sw, "k") == {
        "closed->open": 1,
        "open->half_open": 1,
        "half_open->closed": 1,
    }
    assert await sw.call(_up, key="k") == "up"


async def test_a_guarded_probe_without_an_attempt_limit_keeps_its_turn() -> None:
    """``TimeoutPolicy(attempt=None)``: an attempt may take as long as it takes, so the probe
    keeps its turn until its block ends (documented; as before fix/asyncprobe)."""
    clock = Clock()
    sw = _sw(clock, attempt=None)
    await _open_then_due(sw, clock, "k")
    late = asyncio.Event()
    hung, entered = _guarded(sw, "k", late)
    await _inside(hung, entered)
    clock.advance(3600.0)
    with pytest.raises(seawall.CircuitOpenError):
        await sw.call(_up, key="k")
    late.set()
    await hung
    assert sw.health()["keys"]["k"]["state"] == "closed"  # its success closed it


async def _block(
    sw: seawall.Seawall, key: str, entered: asyncio.Event, until: asyncio.Event
) -> str:
    """The async block form: one attempt whose block waits for ``until``, then fails."""
    async for attempt in sw.attempts(key=key):
        with attempt:
            entered.set()
            await until.wait()
            raise ConnectionError("reset, late")
    return "unreachable"


async def test_a_hung_block_probe_gives_its_turn_up_after_the_attempt_limit() -> None:
    """The block form's ``with attempt`` body hung while it was the probe: every caller of the
    key was refused for as long as it hung (the form drops the attempt limit it cannot
    apply). Its turn ends at that limit now; its late failure is stale news."""
    clock = Clock()
    sw = _sw(clock)
    await _open_then_due(sw, clock, "k")
    entered, late = asyncio.Event(), asyncio.Event()
    hung = asyncio.create_task(_block(sw, "k", entered, late))
    await _inside(hung, entered)
    with pytest.raises(seawall.CircuitOpenError):
        await sw.call(_up, key="k")
    clock.advance(5.0)
    assert await sw.call(_up, key="k") == "up"  # a new probe: closes it
    late.set()
    with pytest.raises(ConnectionError):
        await hung
    books = sw.health()["keys"]["k"]
    assert books["state"] == "closed"
    assert _transitions(sw, "k") == {
        "closed->open": 1,
        "open->half_open": 1,
        "half_open->closed": 1,
    }


def test_a_hung_sync_block_probe_gives_its_turn_up_after_the_attempt_limit() -> None:
    """The sync block form (``for attempt in sw.attempts(...)``) in a thread: as the async
    one, it drops the attempt limit it cannot apply, and its probe was lent only until the
    deadline: with none, it held the turn for as long as it hung."""
    clock = Clock()
    sw = _sw(clock)
    asyncio.run(_open_then_due(sw, clock, "k"))
    entered, late = threading.Event(), threading.Event()
    ended: list[BaseException] = []

    def block() -> None:
        try:
            for attempt in sw.attempts(key="k"):
                with attempt:
                    entered.set()
                    late.wait(30)
                    raise ConnectionError("reset, late")
        except BaseException as exc:
            ended.append(exc)

    thread = threading.Thread(target=block)
    thread.start()
    try:
        assert entered.wait(30)
        with pytest.raises(seawall.CircuitOpenError):
            asyncio.run(sw.call(_up, key="k"))
        clock.advance(5.0)
        assert asyncio.run(sw.call(_up, key="k")) == "up"
    finally:
        late.set()
        thread.join(30)
    assert len(ended) == 1
    assert isinstance(ended[0], ConnectionError)
    assert sw.health()["keys"]["k"]["state"] == "closed"
    assert _transitions(sw, "k") == {
        "closed->open": 1,
        "open->half_open": 1,
        "half_open->closed": 1,
    }
