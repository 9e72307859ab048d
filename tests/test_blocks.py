"""The block form: ``async for attempt in sw.attempts(key=...): with attempt: ...``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

import seawall
from tests.conftest import Upstream, status


async def _loop(sw: seawall.Seawall, body: Callable[[int], None], **options: Any) -> int:
    """``body(attempt.number)`` in a ``with attempt:`` block; how many attempts ran."""
    ran = 0
    async for attempt in sw.attempts(**options):
        with attempt:
            ran += 1
            body(attempt.number)
    return ran


def _raise(exc: Exception) -> Callable[[int], None]:
    def body(_number: int) -> None:
        raise exc

    return body


def _sw(attempts: int = 3, **breaker: float) -> seawall.Seawall:
    return seawall.Seawall(
        policy=seawall.Policy(
            retry=seawall.RetryPolicy(max_attempts=attempts),
            breaker=seawall.BreakerPolicy(**breaker) if breaker else seawall.BreakerPolicy(),
        ),
        entrypoints=False,
    )


async def test_block_retries_a_real_upstream_until_it_succeeds(
    upstream: tuple[Upstream, TestServer],
) -> None:
    up, server = upstream
    up.then(status(503), status(502))
    sw = _sw()
    numbers: list[int] = []
    async with aiohttp.ClientSession() as session:
        async for attempt in sw.attempts(key="block"):
            with attempt:
                numbers.append(attempt.number)
                async with session.get(server.make_url("/")) as resp:
                    resp.raise_for_status()
                    body = await resp.text()
    assert body == "ok"
    assert numbers == [1, 2, 3]
    assert up.hits == 3
    assert sw.health()["keys"]["block"]["retries"] == 2


async def test_block_gives_up_with_the_original_exception_and_its_history() -> None:
    sw = _sw(attempts=2)
    tries: list[int] = []

    def down(number: int) -> None:
        tries.append(number)
        raise ConnectionResetError("reset")

    with pytest.raises(ConnectionResetError) as info:
        await _loop(sw, down, key="down")
    assert tries == [1, 2]
    assert any("attempt" in note for note in info.value.__notes__)


async def test_block_on_narrows_and_a_non_retryable_error_is_raised_at_once() -> None:
    sw = _sw(attempts=5)

    class Stale(Exception):
        pass

    tries = 0
    async for attempt in sw.attempts(key="stale", on=Stale):
        with attempt:
            tries += 1
            if tries < 4:
                raise Stale("not yet")
    assert tries == 4
    keys: list[int] = []

    def missing(number: int) -> None:
        keys.append(number)
        raise KeyError("nope")

    with pytest.raises(KeyError):
        await _loop(sw, missing, key="stale", on=Stale)
    assert keys == [1]


async def test_block_meets_an_open_breaker_with_circuit_open_error() -> None:
    sw = _sw(attempts=1, failure_threshold=1)
    with pytest.raises(ConnectionResetError):
        await _loop(sw, _raise(ConnectionResetError("reset")), key="k")
    ran: list[int] = []
    with pytest.raises(seawall.CircuitOpenError):
        await _loop(sw, ran.append, key="k")
    assert ran == []


async def test_block_without_with_says_what_to_do() -> None:
    sw = _sw()
    with pytest.raises(RuntimeError, match="inside `with attempt:`"):
        async for _attempt in sw.attempts(key="k"):
            pass


async def test_break_between_attempts_stops_the_helper_task() -> None:
    """Leaving the loop by break after a failed attempt leaves no task waiting for a report."""
    sw = _sw(attempts=3)
    before = len(asyncio.all_tasks())
    async for attempt in sw.attempts(key="k"):
        with attempt:
            raise ConnectionResetError("reset")
        break
    for _ in range(20):  # bounded: a few loop turns for the cancellation to land
        if len(asyncio.all_tasks()) == before:
            break
        await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before


async def test_cancelling_inside_a_block_propagates_and_releases() -> None:
    sw = _sw(attempts=3, failure_threshold=1)
    started = asyncio.Event()

    async def body() -> None:
        async for attempt in sw.attempts(key="k"):
            with attempt:
                started.set()
                await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(body())
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(10):  # let the helper task see the cancellation
        await asyncio.sleep(0)
    # The key's breaker is free again: a new block runs at once.
    async for attempt in sw.attempts(key="k"):
        with attempt:
            pass
    assert sw.health()["keys"]["k"]["state"] == "closed"


async def test_a_block_raising_stop_async_iteration_fails_loudly() -> None:
    """A block that raises StopAsyncIteration (``await anext()`` on an exhausted stream)
    does not end the ``async for`` quietly: a RuntimeError chained to it is raised."""

    async def empty_stream() -> Any:
        return
        yield  # pragma: no cover - an async generator that yields nothing

    async def first_chunk() -> None:
        async for attempt in _sw(attempts=1).attempts(key="stream"):
            with attempt:
                await empty_stream().__anext__()

    with pytest.raises(RuntimeError, match="raised StopAsyncIteration") as caught:
        await first_chunk()
    assert isinstance(caught.value.__cause__, StopAsyncIteration)
