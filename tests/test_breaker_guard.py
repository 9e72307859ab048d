"""``async with sw.breaker(key):``: a block guarded by the key's circuit breaker."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

import seawall

from ._helpers import Recorder
from .conftest import status


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _sw(clock: Clock | None = None, **breaker: object) -> seawall.Seawall:
    settings: dict[str, object] = {"failure_threshold": 2, "recovery_timeout": 10.0}
    settings.update(breaker)
    return seawall.Seawall(
        seawall.Policy(breaker=seawall.BreakerPolicy(**settings)),  # type: ignore[arg-type]
        clock=clock,
        entrypoints=False,
    )


async def _fetch(session: aiohttp.ClientSession, url: object) -> int:
    async with session.get(url) as resp:  # type: ignore[arg-type]
        resp.raise_for_status()
        return resp.status


async def test_failures_in_the_block_open_the_breaker(upstream) -> None:
    """Two failed blocks open it; the third block never runs and nothing reaches the upstream."""
    up, server = upstream
    up.default = status(503)
    sw = _sw()
    ran = 0
    async with aiohttp.ClientSession() as session:  # a plain session: only the guard protects

        async def pay() -> None:
            nonlocal ran
            async with sw.breaker("payments"):
                ran += 1
                await _fetch(session, server.make_url("/pay"))

        for _ in range(2):
            with pytest.raises(aiohttp.ClientResponseError):
                await pay()
        assert up.hits == 2
        with pytest.raises(seawall.CircuitOpenError) as info:
            await pay()
    assert ran == 2
    assert up.hits == 2
    assert info.value.key == "payments"
    assert 0 < info.value.retry_after <= 10.0
    detail = sw.health().by_key["payments"]
    assert detail.state == "open"
    assert detail.failures == {"server": 2}
    assert detail.rejections == {"breaker": 1}
    assert detail.last_failure is not None


async def test_one_breaker_per_key_whoever_calls(upstream, make_session) -> None:
    """The guard and the middleware share a key's breaker: the block sees the session's failures."""
    up, server = upstream
    up.default = status(503)
    sw = _sw(failure_threshold=1)
    key = f"http://127.0.0.1:{server.port}"
    session = make_session(sw)
    async with session.get(server.make_url("/")) as resp:
        assert resp.status == 503
    with pytest.raises(seawall.CircuitOpenError):
        async with sw.breaker(key):
            pytest.fail("the block ran although the breaker is open")


async def test_success_closes_a_half_open_breaker() -> None:
    clock = Clock()
    sw = _sw(clock, failure_threshold=1)
    with pytest.raises(ConnectionResetError):
        async with sw.breaker("db"):
            raise ConnectionResetError("reset by peer")
    assert sw.health().by_key["db"].state == "open"
    clock.now += 10.0  # past the recovery timeout: a probe may go
    async with sw.breaker("db") as guard:
        assert guard.key == "db"
    detail = sw.health().by_key["db"]
    assert detail.state == "closed"
    assert (detail.requests, detail.successes) == (2, 1)


async def test_errors_that_are_not_the_dependencys_do_not_count() -> None:
    """A bug in the block, or a 4xx-like error, is raised and never trips the breaker."""
    sw = _sw(failure_threshold=1)
    with pytest.raises(KeyError):
        async with sw.breaker("db"):
            raise KeyError("the caller's bug")
    with pytest.raises(PermissionError):
        async with sw.breaker("db"):
            raise PermissionError("forbidden")
    detail = sw.health().by_key["db"]
    assert detail.state == "closed"
    assert detail.last_failure is None
    assert detail.failures == {"caller": 1, "authorization": 1}


async def test_the_users_patterns_classify_the_block() -> None:
    """The block's exception goes through the key's classifiers, user patterns first."""
    sw = _sw(failure_threshold=1)
    sw.add_pattern(
        "card declined",
        seawall.Classification(category=seawall.Category.CLIENT, counts_as_failure=False),
    )
    with pytest.raises(RuntimeError):
        async with sw.breaker("payments"):
            raise RuntimeError("card declined")
    assert sw.health().by_key["payments"].state == "closed"
    with pytest.raises(RuntimeError):
        async with sw.breaker("payments"):
            raise RuntimeError("upstream exploded")  # UNKNOWN counts as a failure
    assert sw.health().by_key["payments"].state == "open"


async def test_a_cancelled_probe_gives_its_permit_back() -> None:
    """Half-open admits one probe; cancelling it frees the place for the next block."""
    clock = Clock()
    sw = _sw(clock, failure_threshold=1)
    with pytest.raises(TimeoutError):
        async with sw.breaker("db"):
            raise TimeoutError("slow")
    clock.now += 10.0
    entered = asyncio.Event()

    async def probe() -> None:
        async with sw.breaker("db"):
            entered.set()
            await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(probe())
    await asyncio.wait_for(entered.wait(), 5)
    with pytest.raises(seawall.CircuitOpenError):  # the one probe place is taken
        async with sw.breaker("db"):
            pass
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sw.registry.view["db"].cooldown.inflight == 0  # nor is it counted in flight
    async with sw.breaker("db"):  # the cancelled probe gave its permit back
        assert sw.registry.view["db"].cooldown.inflight == 1
    detail = sw.health().by_key["db"]
    assert detail.state == "closed"
    # Four blocks began: the failure, the cancelled probe, the rejected one, the success;
    # two attempts ended (a cancelled block is not an attempt, as in the attempt loop).
    assert (detail.requests, detail.attempts, detail.rejections) == (4, 2, {"breaker": 1})
    assert sw.registry.view["db"].cooldown.inflight == 0


async def test_one_guard_shared_by_many_tasks() -> None:
    """A module-level guard serves concurrent tasks; re-entering it in one task is refused."""
    sw = _sw()
    payments = sw.breaker("payments")
    gate = asyncio.Event()

    async def work(n: int) -> int:
        async with payments:
            await gate.wait()
            return n

    tasks = [asyncio.create_task(work(n)) for n in range(5)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(*tasks), 5) == list(range(5))
    assert sw.health().by_key["payments"].successes == 5
    with pytest.raises(RuntimeError, match="already guarding a block of this task"):
        async with payments, payments:
            pass


async def test_events_are_told(upstream) -> None:
    recorder = Recorder()
    sw = _sw()
    sw.register(recorder)
    with pytest.raises(OSError):
        async with sw.breaker("db"):
            raise OSError("network is unreachable")
    (attempt,) = recorder.of("attempt")
    assert (attempt.key, attempt.category, attempt.exception) == ("db", "network", "OSError")
    (call,) = recorder.of("call")
    assert call.outcome == "network"


@pytest.mark.parametrize(
    ("key", "kind", "text"),
    [(None, TypeError, "give the key as a string"), ("", ValueError, "name the dependency")],
)
def test_bad_keys_say_what_to_do(key: object, kind: type[Exception], text: str) -> None:
    sw = _sw()
    with pytest.raises(kind, match=text):
        sw.breaker(key)  # type: ignore[arg-type]
