"""Attempts that nest: a protected function whose body makes protected calls or requests.

The watchdog keeps one deadline per task. An inner attempt (``sw.call``, a
request through ``sw.middleware()``) in the task of an outer one must neither
erase the outer limit nor take the outer limit's cancellation for its own.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

import seawall
from seawall import watchdog

from .test_watchdog import FrozenClockLoop, _turns


def _sw(**limits: float) -> seawall.Seawall:
    """One route per key, each with its attempt limit and no retry unless the key says so."""
    routes = {
        key: seawall.Policy(
            retry=seawall.RetryPolicy(max_attempts=3 if key.startswith("retried") else 1),
            timeout=seawall.TimeoutPolicy(attempt=limit, deadline=None),
        )
        for key, limit in limits.items()
    }
    return seawall.Seawall(routes=routes, entrypoints=False)


def _on_frozen_clock(scenario_factory: object) -> None:
    loop = FrozenClockLoop()
    try:
        loop.run_until_complete(scenario_factory(loop))  # type: ignore[operator]
    finally:
        loop.close()


def test_an_inner_call_leaves_the_outer_limit_in_force() -> None:
    """The outer attempt (2 s) makes a quick inner call (30 s limit), then hangs: it is cut
    at 2 s. Before, the inner call's end removed the task's only deadline: no limit at all."""
    sw = _sw(outer=2.0, inner=30.0)
    never = asyncio.Event()

    async def quick() -> str:
        return "row"

    async def handler() -> None:
        assert await sw.call(quick, key="inner") == "row"
        await never.wait()

    async def scenario(loop: FrozenClockLoop) -> None:
        call = asyncio.ensure_future(sw.call(handler, key="outer"))
        assert not await _turns(call.done)  # past the inner call, hanging
        assert list(watchdog.of(loop).deadlines.values()) == [2.0]  # the outer limit again
        loop.now = 2.0
        assert await _turns(call.done)
        with pytest.raises(TimeoutError):
            call.result()

    _on_frozen_clock(scenario)


def test_an_outer_limit_that_ends_during_an_inner_call_is_the_outer_attempts() -> None:
    """The outer limit (1 s) passes while an inner call (5 s, retried on timeouts) hangs:
    the outer attempt times out, and the inner call takes that for a cancellation, not for
    its own timeout: it is not retried and counts no failure against its key."""
    sw = _sw(outer=1.0, retried_inner=5.0)
    attempts = 0
    never = asyncio.Event()

    async def hang() -> None:
        nonlocal attempts
        attempts += 1
        await never.wait()

    async def handler() -> None:
        await sw.call(hang, key="retried_inner")

    async def scenario(loop: FrozenClockLoop) -> None:
        call = asyncio.ensure_future(sw.call(handler, key="outer"))
        assert not await _turns(call.done)
        assert list(watchdog.of(loop).deadlines.values()) == [1.0]  # the sooner of the two
        loop.now = 1.0
        assert await _turns(call.done)
        with pytest.raises(TimeoutError):
            call.result()
        assert attempts == 1
        assert not watchdog.of(loop).deadlines
        assert call.cancelling() == 0  # the outer attempt undid the sweep's cancellation

    _on_frozen_clock(scenario)
    keys = sw.health()["keys"]
    assert keys["retried_inner"]["failures"] == {}
    assert keys["outer"]["failures"] != {}


def test_an_inner_limit_that_ends_first_is_the_inner_attempts() -> None:
    """The inner limit (1 s) passes first: the inner call times out inside the outer
    attempt, which goes on under its own limit (3 s) and is cut then."""
    sw = _sw(outer=3.0, inner=1.0)
    never = asyncio.Event()
    inner_outcome: list[str] = []

    async def handler() -> None:
        try:
            await sw.call(never.wait, key="inner")
        except TimeoutError:
            inner_outcome.append("timed out")
        await never.wait()

    async def scenario(loop: FrozenClockLoop) -> None:
        call = asyncio.ensure_future(sw.call(handler, key="outer"))
        assert not await _turns(call.done)
        loop.now = 1.0
        assert await _turns(lambda: inner_outcome == ["timed out"])
        assert not call.done()
        assert list(watchdog.of(loop).deadlines.values()) == [3.0]
        loop.now = 3.0
        assert await _turns(call.done)
        with pytest.raises(TimeoutError):
            call.result()

    _on_frozen_clock(scenario)


async def test_the_lean_paths_restore_the_enclosing_deadline(upstream, make_session) -> None:
    """On a stock loop (the lean paths' own bookkeeping): inside an outer ``sw.call``, an
    inner ``sw.call`` and a request through the middleware are watched for the sooner
    deadline, and the outer deadline is watched again after each."""
    up, server = upstream
    up.then(lambda request: asyncio.sleep(0, web.Response(text="ok")))
    up.then(lambda request: asyncio.sleep(0, web.Response(text="ok")))
    sw = _sw(outer=20.0, inner=30.0, short=5.0)
    session: aiohttp.ClientSession = make_session(sw)
    dog = watchdog.of(asyncio.get_running_loop())
    seen: dict[str, float] = {}

    async def look(name: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        seen[name] = dog.deadlines[task]

    async def handler() -> None:
        task = asyncio.current_task()
        assert task is not None
        outer = dog.deadlines[task]
        await sw.call(look, "inside a longer inner limit", key="inner")
        await sw.call(look, "inside a shorter inner limit", key="short")
        assert dog.deadlines[task] == outer
        async with session.get(server.make_url("/")) as resp:  # its key: the default route
            assert resp.status == 200
        assert dog.deadlines[task] == outer
        seen["outer"] = outer

    await sw.call(handler, key="outer")
    assert seen["inside a longer inner limit"] == seen["outer"]
    assert seen["inside a shorter inner limit"] < seen["outer"]
    assert asyncio.current_task() not in dog.deadlines
