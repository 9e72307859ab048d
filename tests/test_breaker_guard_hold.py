"""``async with sw.breaker(key)`` is held for a near probe verdict, as ``sw.call`` is.

On the test clock (the pacing test on virtual time): a block refused while a
probe's verdict is within ``hold`` waits for it, runs when the probe succeeds
(paced in the ramp), and gets ``CircuitOpenError`` when it fails.
"""

from __future__ import annotations

import asyncio

import pytest

import seawall
import seawall.testing
from seawall.breaker import DRAIN_SHARE, RAMP, Breaker, BreakerState

from . import _virtual_time as virtual_time
from ._helpers import Recorder
from .test_breaker import Clock
from .test_breaker_hold import (
    Upstream,
    _cancelled_as_released,
    _open,
    _probe_in_flight,
    _recovered,
    _seawall,
    _until,
)


class Guarded:
    """Blocks guarded by ``sw.breaker("up")``, each in its own task; which ones ran."""

    def __init__(self, sw: seawall.Seawall) -> None:
        self.guard = sw.breaker("up")
        self.ran: list[str] = []

    async def block(self, name: str) -> str:
        async with self.guard:
            self.ran.append(name)
        return name

    def start(self, name: str) -> asyncio.Task[str]:
        return asyncio.create_task(self.block(name))


async def _guarded_probe_in_flight(
    **settings: float,
) -> tuple[seawall.Seawall, Upstream, Breaker, asyncio.Task[str], Guarded]:
    """A key ``"up"`` opened by a failed call, its probe (``sw.call``) in flight at the gate."""
    sw, up, breaker, probe = await _probe_in_flight(**settings)
    return sw, up, breaker, probe, Guarded(sw)


async def test_a_block_held_during_a_probe_runs_when_it_succeeds() -> None:
    """The block waits for the probe's success instead of failing 50 ms before it."""
    sw, up, breaker, probe, guarded = await _guarded_probe_in_flight()
    block = guarded.start("held")
    await _until(lambda: breaker.held == 1)
    assert guarded.ran == []  # held: it does not run while the probe flies
    up.gate.set()
    assert await probe == "probe"
    assert await block == "held"
    assert guarded.ran == ["held"]
    assert breaker.state is BreakerState.CLOSED
    detail = sw.health().by_key["up"]
    assert (detail.held_total, detail.rejections, detail.successes) == (1, {}, 2)
    assert sw.registry.view["up"].cooldown.inflight == 0


async def test_a_block_held_during_a_probe_is_refused_when_it_fails() -> None:
    """Refused after the hold as ``sw.call`` is: the same rejection counted and told."""
    sw, up, breaker, probe, guarded = await _guarded_probe_in_flight()
    recorder = Recorder()
    sw.register(recorder)
    block = guarded.start("held")
    call = asyncio.create_task(sw.call(up, "call", key="up"))
    await _until(lambda: breaker.held == 2)
    up.fail = True
    up.gate.set()
    with pytest.raises(ConnectionRefusedError):
        await probe
    with pytest.raises(seawall.CircuitOpenError) as refused:
        await block
    with pytest.raises(seawall.CircuitOpenError) as call_refused:
        await call
    assert guarded.ran == []
    assert up.calls == ["trip", "probe"]
    assert breaker.held == 0
    assert refused.value.key == "up"
    assert refused.value.retry_after == pytest.approx(call_refused.value.retry_after)
    detail = sw.health().by_key["up"]
    assert (detail.held_total, detail.rejections) == (2, {"breaker": 2})  # the block's, the call's
    rejections = recorder.of("rejected")
    assert [(e.key, e.reason, e.method) for e in rejections] == [
        ("up", "breaker", "BLOCK"),
        ("up", "breaker", "CALL"),
    ]
    assert sw.registry.view["up"].cooldown.inflight == 0


async def test_hold_zero_refuses_a_block_at_once_while_a_probe_flies() -> None:
    """``hold=0`` is the classic breaker: the block fails at once (as before this change)."""
    sw, up, breaker, probe, guarded = await _guarded_probe_in_flight(hold=0.0)
    with pytest.raises(seawall.CircuitOpenError):
        await guarded.block("refused")
    assert breaker.held == 0
    assert guarded.ran == []
    assert sw.health().by_key["up"].rejections == {"breaker": 1}
    up.gate.set()
    assert await probe == "probe"


async def test_a_block_beyond_hold_max_calls_is_refused_at_once() -> None:
    """The per-key cap bounds held blocks as it bounds held calls; the first still goes."""
    _, up, breaker, probe, guarded = await _guarded_probe_in_flight(hold_max_calls=1)
    first = guarded.start("first")
    await _until(lambda: breaker.held == 1)
    with pytest.raises(seawall.CircuitOpenError):
        await guarded.block("second")  # refused without waiting for the verdict
    assert breaker.held == 1
    up.gate.set()
    assert await probe == "probe"
    assert await first == "first"
    assert guarded.ran == ["first"]


async def test_a_cancelled_held_block_frees_its_place_and_does_not_run() -> None:
    sw, up, breaker, probe, guarded = await _guarded_probe_in_flight(hold_max_calls=1)
    gone = guarded.start("gone")
    await _until(lambda: breaker.held == 1)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert breaker.held == 0
    stays = guarded.start("stays")  # the one place is free again
    await _until(lambda: breaker.held == 1)
    up.gate.set()
    assert await probe == "probe"
    assert await stays == "stays"
    assert guarded.ran == ["stays"]
    assert sw.registry.view["up"].cooldown.inflight == 0
    assert sw.health().by_key["up"].rejections == {}


@pytest.mark.parametrize(("seconds", "held"), [(10.0, True), (1.0, False)])
async def test_a_block_is_held_only_if_the_probe_comes_before_the_inbound_deadline(
    seconds: float, held: bool
) -> None:
    """The probe is due in about 1.6-2 s: under ``seawall.deadline(10)`` the block waits,
    under ``seawall.deadline(1)`` it fails at once."""
    clock, up = Clock(), Upstream()
    sw = _seawall(clock)
    breaker = await _open(sw, up)
    assert 1.0 < breaker.retry_after() < 5.0
    guarded = Guarded(sw)

    async def block() -> str:
        with seawall.deadline(seconds):
            return await guarded.block("block")

    task = asyncio.create_task(block())
    if held:
        await _until(lambda: breaker.held == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        with pytest.raises(seawall.CircuitOpenError):
            await task
    assert breaker.held == 0
    assert guarded.ran == []


async def test_a_held_block_cancelled_as_it_is_released_gives_its_turn_back() -> None:
    """Its ramp ticket goes back: the ramp ends by itself, and the block does not run."""
    clock, up = Clock(), Upstream()
    sw = _seawall(clock)
    guarded = Guarded(sw)
    breaker = await _cancelled_as_released(sw, up, clock, lambda: guarded.start("held"))
    assert breaker.turn() is None  # nobody waits: the ramp is over
    assert guarded.ran == []
    assert sw.registry.view["up"].cooldown.inflight == 0


async def test_a_new_block_takes_a_turn_in_the_ramp() -> None:
    """A block arriving while the released calls drain queues behind them, as ``sw.call``
    does, instead of jumping the ramp."""
    clock, up = Clock(), Upstream()
    sw = _seawall(clock)
    breaker, gap = await _recovered(sw, up, clock)
    assert await Guarded(sw).block("new") == "new"
    assert breaker.ramp_until == pytest.approx(clock.now + 2 * gap)  # it took the next turn


def test_released_blocks_are_paced_in_the_ramp() -> None:
    """Blocks held behind a probe run one ramp gap apart once it succeeds, not all at once
    (virtual time: the ramp's waits are real sleeps that take no wall time)."""
    seawall.testing.set_testing(False)  # real (virtual-time) waits: this test measures pacing

    async def scenario() -> tuple[list[float], float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, virtual_time.VirtualTimeLoop)
        policy = seawall.Policy(
            breaker=seawall.BreakerPolicy(failure_threshold=1, recovery_timeout=2.0, hold=5.0),
            timeout=seawall.TimeoutPolicy(attempt=None, deadline=None),
        )
        sw = seawall.Seawall(policy, clock=loop.time, entrypoints=False)
        guard = sw.breaker("up")
        with pytest.raises(ConnectionRefusedError):
            async with guard:
                raise ConnectionRefusedError("down")
        breaker = sw.registry.view["up"].breaker
        await asyncio.sleep(breaker.retry_after())
        gate, started = asyncio.Event(), asyncio.Event()
        ran: list[float] = []

        async def probe() -> None:
            async with guard:
                started.set()
                await gate.wait()

        async def block() -> None:
            async with guard:
                ran.append(loop.time())

        probing = asyncio.create_task(probe())
        blocks: list[asyncio.Task[None]] = []
        try:
            await started.wait()
            for number in range(1, 4):
                blocks.append(asyncio.create_task(block()))
                await _until(lambda n=number: breaker.held == n)  # type: ignore[misc]
            gate.set()
            await probing
            rate = breaker.rate  # measured as it closed: the ramp's gap
            await asyncio.gather(*blocks)
        finally:  # failed: no task left pending on the loop
            for task in (probing, *blocks):
                task.cancel()
            await asyncio.gather(probing, *blocks, return_exceptions=True)
        return ran, 1.0 / ((1.0 + DRAIN_SHARE) * rate) if rate else RAMP / 3

    ran, gap = virtual_time.run(scenario())
    assert gap > 0.1
    assert [t - ran[0] for t in ran] == pytest.approx([0.0, gap, 2 * gap], abs=1e-6)
