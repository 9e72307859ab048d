"""The fleet store against a real redis-server: several stores (one per "process") in one loop.

Each ``Seawall`` here is a fleet member with its own node id; the tests step
the fleet with ``store.sync()`` (one round trip) instead of waiting for the
background task. Multi-process proof: ``test_fleet_processes.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from seawall import Seawall
from seawall.breaker import BreakerState
from seawall.config import ConfigError, load_config
from seawall.cooldown import RECHECK
from seawall.fleet import Fleet, FleetStore
from seawall.fleet import store as fleet_store
from seawall.fleet.pacing import FLEET_CUT, FleetCooldown
from seawall.fleet.parts import FleetBreaker
from seawall.llm.usage import Usage
from seawall.policy import BreakerPolicy, Policy
from seawall.state import KeyState
from tests._helpers import Clock
from tests._redis import RedisServer, free_port, redis_server, server_fixture

POLICY = Policy(breaker=BreakerPolicy(failure_threshold=2, recovery_timeout=0.3))


server = server_fixture()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


class Member:
    """One fleet member: a Seawall, its store and the state of key ``k``."""

    def __init__(
        self,
        url: str,
        prefix: str,
        policy: Policy = POLICY,
        clock: Callable[[], float] | None = None,
    ) -> None:
        # A generous time limit: these tests are about the fleet's logic, and the
        # machine may be loaded (the fall back within 200 ms is test_fleet_processes').
        fleet = Fleet(url, prefix=prefix, refresh=5.0, timeout=1.0)  # the most it takes
        self.sw = Seawall(policy, entrypoints=False, state=fleet, clock=clock)
        assert isinstance(self.sw.store, FleetStore)
        self.store: FleetStore = self.sw.store
        self.state: KeyState = self.sw.state_for("k", policy)
        assert isinstance(self.state.breaker, FleetBreaker)
        self.breaker: FleetBreaker = self.state.breaker

    def fail(self, calls: int) -> None:
        for _ in range(calls):
            self.breaker.call_failed()


@pytest.fixture(autouse=True)
def _read_idle_keys_every_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle keys are read every round here (each ``IDLE_EVERY``-th round otherwise)."""
    monkeypatch.setattr(fleet_store, "IDLE_EVERY", 1)


@pytest.fixture
async def members(server: RedisServer, prefix: str) -> AsyncIterator[list[Member]]:
    made = [Member(server.url, prefix) for _ in range(3)]
    for m in made:
        assert await m.store.sync()
    yield made
    for m in made:
        await m.sw.aclose()


async def step(members: list[Member]) -> None:
    """Two rounds of sync: what one publishes, the others read."""
    for _ in range(2):
        for m in members:
            await m.store.sync()


async def exchange_costs(members: list[Member]) -> None:
    """Two rounds of cost reports, then one more sync for the first member: each has read
    what the others published."""
    for _ in range(2):  # the first exchange publishes, the second reads the other
        for m in members:
            await m.store.sync()
        for m in members:
            m.store.costs_due()
    await members[0].store.sync()


async def test_one_open_process_does_not_open_the_others(members: list[Member]) -> None:
    a, b, c = members
    a.fail(2)
    assert a.breaker.state is BreakerState.OPEN
    await step(members)
    # One vote and no failures of their own: the partition guard keeps them closed.
    assert b.breaker.state is BreakerState.CLOSED
    assert c.breaker.state is BreakerState.CLOSED
    assert b.sw.health().by_key["k"].state == "closed"


async def test_one_vote_and_local_evidence_opens(members: list[Member]) -> None:
    a, b, c = members
    a.fail(2)
    b.fail(1)  # one failure of its own: below its threshold, but evidence
    await step(members)
    assert b.breaker.state is BreakerState.OPEN
    # b voted too: two processes, so the fleet is open and c adopts it without evidence.
    await step(members)
    assert c.breaker.state is BreakerState.OPEN
    assert not c.breaker.voter


#: A lease lasts one recovery interval in Redis, on real time: 2 s, so that a loaded
#: machine stalling this process between two members' syncs cannot let it expire and
#: grant a second one (0.3 s could).
LEASE_POLICY = Policy(breaker=BreakerPolicy(failure_threshold=2, recovery_timeout=2.0))


async def test_one_probe_lease_for_the_fleet_then_the_close_spreads(
    server: RedisServer, prefix: str
) -> None:
    members = [Member(server.url, prefix, LEASE_POLICY) for _ in range(3)]
    try:
        for m in members:
            assert await m.store.sync()
        await _one_probe_lease_then_the_close_spreads(members)
    finally:
        for m in members:
            await m.sw.aclose()


async def _one_probe_lease_then_the_close_spreads(members: list[Member]) -> None:
    a, b, _ = members
    a.fail(2)
    b.fail(2)
    await step(members)
    assert all(m.breaker.state is BreakerState.OPEN for m in members)
    assert all(m.breaker.awaiting for m in members)
    # Bounded: the recovery interval (2 s, jittered down) passes, then leases are asked.
    deadline = time.monotonic() + 30
    granted: list[Member] = []
    while not granted and time.monotonic() < deadline:
        await step(members)
        granted = [m for m in members if not m.breaker.awaiting]
        await asyncio.sleep(0.02)
    assert len(granted) == 1, "exactly one process may probe in a recovery interval"
    prober = granted[0]
    permit = prober.breaker.admit()
    assert permit is not None
    assert permit.probe
    for other in members:
        if other is not prober:
            assert other.breaker.admit() is None  # held open: no probe of their own
    prober.breaker.record(permit, failure=False)
    assert prober.breaker.state is BreakerState.CLOSED
    await step(members)
    assert all(m.breaker.state is BreakerState.CLOSED for m in members)


async def granted_one(members: list[Member], clock: Clock) -> Member:
    """Open every member's breaker (each with failures of its own), make them due a probe,
    and step the fleet until one holds the lease (bounded)."""
    for m in members:
        m.fail(2)
    await step(members)
    assert all(m.breaker.state is BreakerState.OPEN for m in members)
    clock.now += 2 * LEASE_POLICY.breaker.recovery_timeout  # every breaker due a probe
    for _ in range(3):
        await step(members)
        granted = [m for m in members if not m.breaker.awaiting]
        if granted:
            assert len(granted) == 1, "exactly one process may probe in a recovery interval"
            return granted[0]
    raise AssertionError("no member won the lease")


async def test_a_probe_restarts_the_fleets_interval_from_its_send(
    server: RedisServer, prefix: str
) -> None:
    # A caller that comes late to a won lease (its loop stalled, its callers asleep) must
    # not let the next lease come sooner than one interval after its probe: before, two
    # probes of the fleet went 0.38-0.56 s apart (recovery 1 s) under load.
    clock = Clock()
    members = [Member(server.url, prefix, LEASE_POLICY, clock) for _ in range(2)]
    client = aioredis.Redis.from_url(server.url)
    lease = f"{prefix}:{{k}}:p"
    try:
        prober = await granted_one(members, clock)
        await client.pexpire(lease, 100)  # the grant all but used up by a late caller ...
        permit = prober.breaker.admit()
        assert permit is not None
        assert permit.probe
        await prober.store.sync()  # ... whose probe leaves now: the interval runs from here
        assert await client.pttl(lease) > 1000  # (2 s less this sync's round trip)
        assert await client.get(lease) == prober.store.node.encode()
    finally:
        await client.aclose()
        for m in members:
            await m.sw.aclose()


async def test_a_lease_unused_in_its_interval_lapses(server: RedisServer, prefix: str) -> None:
    # The grant holds for one interval of Redis's clock; a caller coming after it (a
    # stalled loop) gets no probe, and the process asks for the lease again.
    clock = Clock()
    members = [Member(server.url, prefix, LEASE_POLICY, clock) for _ in range(2)]
    try:
        prober = await granted_one(members, clock)
        clock.now += LEASE_POLICY.breaker.recovery_timeout + 0.01
        await prober.store.sync()
        assert prober.breaker.awaiting
        assert prober.breaker.admit() is None
    finally:
        for m in members:
            await m.sw.aclose()


async def test_falling_back_while_open_keeps_the_share_of_probing(prefix: str) -> None:
    # Redis stalls for all alike: each of 3 open members probing on its own interval would
    # send the fleet 3 probes per interval. Each keeps one per interval and member.
    srv = RedisServer()
    srv.start()
    clock = Clock()
    recovery = LEASE_POLICY.breaker.recovery_timeout
    members = [Member(srv.url, prefix, LEASE_POLICY, clock) for _ in range(3)]
    try:
        for m in members:
            m.fail(2)
        await step(members)
        await step(members)
        a = members[0]
        assert a.breaker.members == 3
        srv.kill()
        assert not await a.store.sync()
        assert not a.breaker.awaiting  # its own clock ...
        assert a.breaker.reopen_at >= clock.now + 0.8 * 3 * recovery  # ... with its share
        clock.now = a.breaker.reopen_at
        permit = a.breaker.admit()
        assert permit is not None
        a.breaker.record(permit, failure=True)  # the probe failed: open again, same share
        assert a.breaker.state is BreakerState.OPEN
        assert a.breaker.reopen_at >= clock.now + 0.8 * 3 * recovery
    finally:
        for m in members:
            await m.sw.aclose()
        srv.kill()


async def test_a_429_wait_is_shared(members: list[Member]) -> None:
    a, b, _ = members
    a.state.cooldown.start(2.0)
    await step(members)
    assert 1.5 < b.state.cooldown.remaining() <= 2.0


async def test_a_learnt_rate_is_split_among_the_pacing_members(members: list[Member]) -> None:
    a, b, c = members
    a.state.cooldown.reserve()  # a and b pace the key; c does not call it
    b.state.cooldown.reserve()
    await step(members)
    a.state.cooldown.start(0.01)  # a 429 "wait 10 ms": at most 100 requests/s
    await step(members)
    for m in (a, b):
        assert m.state.cooldown.shared is not None
        rate, pacing = m.state.cooldown.shared
        assert pacing == 2
        # The level a's cut measured (0.97 x 100/s, see seawall.cooldown), not the cruise pace
        # it restarts at locally (0.9 of that): the fleet's rate grows slowly from it.
        assert 96 < rate <= 98.5
        assert m.state.cooldown.rate == pytest.approx(rate / 2)
    assert c.state.cooldown.shared is None
    assert c.state.cooldown.rate is None


async def test_a_bound_lowers_the_fleets_rate_at_once_a_cut_waits_its_turn(
    members: list[Member],
) -> None:
    a, b, _ = members
    a.state.cooldown.reserve()
    b.state.cooldown.reserve()
    await step(members)
    a.state.cooldown.start(0.001)  # a first 429 "wait 1 ms": a weak bound, 970/s
    await step(members)
    assert b.state.cooldown.shared is not None
    assert b.state.cooldown.shared[0] == pytest.approx(970.0, rel=0.01)
    b.state.cooldown.start(0.001)  # a cut of 10 %, too soon after a's level: not taken
    await step(members)
    assert b.state.cooldown.shared[0] == pytest.approx(970.0, rel=0.01)
    b.state.cooldown.start(0.009)  # a 429 "wait 9 ms": at most 111/s, taken at once
    await step(members)
    for m in (a, b):
        assert m.state.cooldown.shared is not None
        assert m.state.cooldown.shared[0] == pytest.approx(0.97 / 0.009, rel=0.01)


class Told:
    """A stand-in for the store: what a ``FleetCooldown`` tells it (no Redis needed)."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.bounds: list[bool] = []
        self.costly: list[bool] = []
        self.crowds: list[str] = []

    def moved(self, breaker: FleetBreaker, old: BreakerState, new: BreakerState) -> None:
        pass

    def cooled(self, key: str, seconds: float) -> None:
        pass

    def rated(self, key: str, rate: float, *, bound: bool = False, costly: bool = False) -> None:
        self.rates.append(rate)
        self.bounds.append(bound)
        self.costly.append(costly)

    def demanded(self, key: str) -> None:
        pass

    def crowded(self, key: str) -> None:
        self.crowds.append(key)


def _alone() -> tuple[Clock, Told, FleetCooldown]:
    """A key's ``FleetCooldown`` with no store: on a clock at 100 s, telling ``Told``."""
    clock, told = Clock(), Told()
    clock.now = 100.0
    return clock, told, FleetCooldown("k", clock, 60.0, told)


def test_the_429s_of_one_overshoot_cut_the_fleets_rate_once() -> None:
    clock, told, cooldown = _alone()
    cooldown.pace((100.0, 2))
    assert cooldown.rate == pytest.approx(50.0)
    for _ in range(5):  # the answers of requests sent at the old pace
        cooldown.start(None)
        clock.now += 0.01
    assert told.rates == [pytest.approx(100.0 * FLEET_CUT)]
    assert cooldown.cuts == 1  # booked turns voided once, not once per 429
    clock.now += 1.0  # a later overshoot is news again
    cooldown.start(None)
    assert len(told.rates) == 2


def test_crowded_callers_ask_the_fleet_for_an_early_probe_and_follow_its_pace() -> None:
    """While the fleet paces the key, crowded callers ask the fleet (Redis decides) to probe
    early instead of probing alone; the probe's pace voids their turns and serves the demand.
    (``test_fleet_probe.py`` has the fleet's side against a real redis-server.)"""
    clock, told, cooldown = _alone()
    cooldown.start(1 / 128)  # a level learnt here, alone (121/s)
    cooldown.pace((100.0, 2))  # then the fleet paces the key: 50/s for this process
    assert cooldown.rate == pytest.approx(50.0)
    cuts = cooldown.cuts
    for _ in range(200):  # 2 s of 100/s asked for, against 50/s: a queue grows
        clock.now += 0.01
        cooldown.reserve()
    assert not told.crowds  # callers with no deadline are never crowded
    assert cooldown.reserve(max_wait=2.0) > 0.5  # a caller waits a quarter of its deadline
    assert told.crowds == ["k"]  # the fleet hears of it ...
    assert cooldown.cuts == cuts  # ... and no probe of its own: its turns stand
    assert cooldown.rate == pytest.approx(50.0)
    cooldown.pace((100.0, 2), probe=100.0)  # the fleet's probe starts from its rate
    assert cooldown.cuts == cuts + 1  # turns booked at the level are void
    cooldown.pace((400.0, 2), probe=100.0)  # two doublings later: capped at 1.2x demand
    assert cooldown.rate == pytest.approx(1.2 * 100.0, rel=0.05)


def test_a_refill_interval_bounds_the_fleets_cut() -> None:
    _, told, cooldown = _alone()  # its clock stands still
    cooldown.pace((300.0, 3))  # the fleet paces at 300/s; a 429 says "wait 20 ms"
    cooldown.start(0.02)
    # a cut of 10 %, and the bound (at most 50/s: not 270/s), which Redis takes at once
    assert told.rates == [pytest.approx(270.0), pytest.approx(0.97 / 0.02)]
    assert told.bounds == [False, True]
    assert told.costly == [False, False]  # a pause of 20 ms: no hold after the cut


def test_a_cut_whose_429_paused_for_whole_seconds_is_costly() -> None:
    clock, told, cooldown = _alone()
    cooldown.pace((300.0, 3))
    cooldown.start(1.0)  # "Retry-After: 1": the fleet pauses a second for it
    clock.now += 2.0
    cooldown.start(None)  # no wait said: a guess, as costly
    assert told.rates == [pytest.approx(270.0), pytest.approx(270.0)]
    assert told.costly == [True, True]


def test_every_429s_refill_interval_may_lower_the_fleets_rate_between_cuts() -> None:
    # The cause of 130 429s per 789 successes (issue 12): the fleet's first rate came from
    # a first 429's 1 ms wait (970/s for an upstream of 100/s) and only came down by a cut
    # of 10 % per spacing. A wait is a fact about the upstream: any 429 may tell it.
    clock, told, cooldown = _alone()
    cooldown.pace((970.0, 4))
    cooldown.start(0.001)  # the first 429 of an overshoot: the spaced cut
    assert told.rates == [pytest.approx(873.0)]
    for wait in (0.008, 0.005, 0.009, 0.009):  # 429s of the same overshoot
        clock.now += 0.01
        cooldown.start(wait)
    # the bounds that say more than the last one (121/s, then 108/s); no second cut
    assert told.rates[1:] == [pytest.approx(0.97 / 0.008), pytest.approx(0.97 / 0.009)]
    assert told.bounds == [False, True, True]
    cooldown.pace((107.0, 4))  # the fleet's rate came down
    clock.now += 0.01
    cooldown.start(0.009)  # no news: the rate is no higher than the bound
    assert len(told.rates) == 3


def test_the_fleets_pace_voids_turns_booked_at_a_slow_local_pace() -> None:
    _, _, cooldown = _alone()
    cooldown.start(None)  # a 429 with no wait on a fresh key: slow start at 20/s, alone
    assert cooldown.rate == pytest.approx(20.0)
    cuts = cooldown.cuts
    waits = [cooldown.reserve() for _ in range(30)]  # 30 callers book turns ahead
    assert waits[-1] > 0.5
    cooldown.pace((400.0, 2))  # the fleet's pace arrives: 200/s for this process
    assert cooldown.cuts == cuts + 1  # the callers asleep on those turns book again
    waits = [cooldown.reserve() for _ in range(30)]
    assert max(waits) < 30 / 200 + 0.01
    cooldown.pace((410.0, 2))  # the fleet's rate grew a little: nothing to book again
    assert cooldown.cuts == cuts + 1


def test_callers_woken_late_go_a_whole_share_turn_apart() -> None:
    # A process whose event loop stalled must not spend the turns it missed as a burst
    # (the other processes used the upstream meanwhile; its bucket holds a few at most).
    clock, _, cooldown = _alone()
    cooldown.pace((100.0, 4))  # this process's share: 25/s, a turn every 40 ms
    waits = [cooldown.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16])
    clock.now += 0.5  # a stall: every turn has passed when the callers wake, together
    gaps = [cooldown.spaced() for _ in range(5)]
    assert gaps == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16])  # sent at the share's pace


def test_callers_asleep_on_a_pace_near_the_floor_stay_members_and_spaced_briefly() -> None:
    clock, _, cooldown = _alone()
    cooldown.start(None)
    for _ in range(12):  # a burst of 429s halves a pace learnt alone towards the floor
        clock.now += 0.001
        cooldown.start(None)
    assert cooldown.rate is not None
    assert cooldown.rate < 1.0
    waits = [cooldown.reserve() for _ in range(5)]
    assert waits[-1] > 5.0
    assert cooldown.booked_ahead(clock.now)  # its callers sleep: it stays a pacing member
    clock.now += 0.5  # woken late together: each goes at most RECHECK after the previous
    gaps = [cooldown.spaced() for _ in range(5)]
    assert max(gaps) <= RECHECK
    cooldown.pace((100.0, 1))  # the fleet's pace voids the turns and the spacing
    assert not cooldown.booked_ahead(clock.now)
    assert cooldown.spaced() == 0.0


def test_without_a_fleet_rate_the_local_learner_runs_and_publishes_its_level() -> None:
    _, told, cooldown = _alone()
    cooldown.pace((100.0, 1))
    cooldown.pace(None)  # the fleet's rate was forgotten
    assert cooldown.rate is None
    cooldown.start(0.01)  # the local learner cuts: "wait 10 ms" bounds the rate at 100/s
    assert cooldown.level == pytest.approx(97.0)
    assert cooldown.rate == pytest.approx(97.0 * 0.9)  # it restarts at its cruise pace
    assert told.rates == [pytest.approx(97.0)]  # the fleet hears of the level
    assert told.bounds == [True]  # (the wait's bound: Redis takes it however recent a cut)
    cooldown.start(None)  # no level measured (a slow start): nothing to publish
    assert told.rates == [pytest.approx(97.0)]


async def test_every_key_expires(members: list[Member], server: RedisServer, prefix: str) -> None:
    a, b, _ = members
    a.fail(2)
    b.fail(2)
    a.state.cooldown.start(1.0)
    await step(members)
    client = aioredis.Redis.from_url(server.url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        assert keys
        for key in keys:
            # Cluster hash tags (the cost reports' hash and its index share one slot)
            assert b"{k}" in key or key.endswith((b"{costs}", b"{costs}:w"))
            assert await client.pttl(key) > 0, key
    finally:
        await client.aclose()


async def test_redis_out_of_reach_falls_back_and_a_held_breaker_runs_locally(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    m = Member(url, "fb")
    try:
        caplog.set_level(logging.INFO, logger="seawall")
        assert not await m.store.sync()
        assert m.sw.health().state == "local-fallback"
        m.fail(2)
        assert m.breaker.state is BreakerState.OPEN
        assert not m.breaker.awaiting  # its own clock, as in-process
        assert "s3cret-pw" not in caplog.text
        assert "127.0.0.1" in caplog.text
        assert "s3cret-pw" not in repr(m.store.where)
    finally:
        await m.sw.aclose()


async def test_a_fall_back_keeps_the_fleets_last_share_then_learns_alone(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = RedisServer()
    srv.start()
    try:
        a, b = Member(srv.url, prefix), Member(srv.url, prefix)
        for m in (a, b):
            m.state.cooldown.reserve()
        await step([a, b])
        a.state.cooldown.start(0.01)  # "wait 10 ms": the fleet paces at 97/s
        await step([a, b])
        assert a.state.cooldown.rate == pytest.approx(97.0 / 2)
        srv.kill()
        assert not await a.store.sync()
        # Still its share of the fleet's rate, not unpaced (all four of a fleet would
        # pace at the whole rate, or not at all, after a blip of Redis)...
        assert a.state.cooldown.rate == pytest.approx(97.0 / 2)
        a.state.cooldown.start(None)  # ... cut by its own 429s meanwhile
        assert a.state.cooldown.rate == pytest.approx(97.0 * FLEET_CUT / 2)
        monkeypatch.setattr(fleet_store, "RATE_TTL", 0.0)  # held no longer than Redis would
        assert not await b.store.sync()
        assert b.state.cooldown.rate == pytest.approx(97.0 / 2)
        assert not await b.store.sync()
        assert b.state.cooldown.rate is None  # learnt alone again, from its next 429
        await a.sw.aclose()
        await b.sw.aclose()
    finally:
        srv.kill()


async def test_a_cut_at_the_plateau_is_a_dip_the_next_one_lowers_it(
    members: list[Member], server: RedisServer, prefix: str
) -> None:
    link = members[0].store.link
    keys = [f"{prefix}:{{k}}:{part}" for part in "bvcr"]

    async def rate(value: float, *, bound: bool = False) -> dict[bytes, bytes]:
        # rate, doubling, ttl, no spacing of cuts, bound, rise 3 s, plateau 0.97 (outbox.py's)
        args = ["n", round(value * 1000), 60_000, 10_000, 0, int(bound), 3000, 970]
        await link.run([("RATE", keys, args)])
        return await client.hgetall(keys[3])

    client = aioredis.Redis.from_url(server.url)
    try:
        stored = await rate(970.0, bound=True)  # a first 429's 1 ms wait
        assert float(stored[b"r"]) == float(stored[b"w"]) == 970.0
        stored = await rate(97.0, bound=True)  # a 10 ms wait: taken at once, a fact
        assert float(stored[b"r"]) == float(stored[b"w"]) == 97.0
        stored = await rate(87.3)  # a cut at the plateau: a dip back to it
        assert float(stored[b"r"]) == 87.3
        assert float(stored[b"w"]) == 97.0
        stored = await rate(80.0)  # the next one lowers the plateau under the rate it cut
        assert float(stored[b"r"]) == 80.0
        assert 0.97 * 87.3 <= float(stored[b"w"]) < 0.97 * 90
        stored = await rate(200.0)  # a cut above the rate: no news
        assert float(stored[b"r"]) == 80.0
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def two_linked(prefix: str) -> AsyncIterator[tuple[RedisServer, Member, Member]]:
    """A Redis of the test's own (to kill and restart) and two members linked to it."""
    srv = RedisServer()
    srv.start()
    try:
        a, b = Member(srv.url, prefix), Member(srv.url, prefix)
        assert await a.store.sync()
        assert await b.store.sync()
        yield srv, a, b
        await a.sw.aclose()
        await b.sw.aclose()
    finally:
        srv.kill()


async def test_restart_resyncs_open_breakers(prefix: str) -> None:
    async with two_linked(prefix) as (srv, a, b):
        srv.kill()
        assert not await a.store.sync()
        a.fail(2)  # opens while Redis is gone: kept locally
        b.fail(1)
        srv.start()
        await relink([a, b])
        await step([a, b])
        assert b.breaker.state is BreakerState.OPEN  # a's open reached b after the restart


async def relink(members: list[Member]) -> None:
    """Sync until every member is linked to the (restarted) Redis again (5 s at most)."""
    deadline = time.monotonic() + 5
    while not all(m.store.linked for m in members) and time.monotonic() < deadline:
        for m in members:
            await m.store.sync()
        await asyncio.sleep(0.05)
    assert all(m.sw.health().state == "shared" for m in members)


@pytest.mark.parametrize("when", ["posted, then the round failed", "while Redis was gone"])
async def test_restart_resyncs_a_running_429_wait(prefix: str, when: str) -> None:
    """A 429's wait that never reached Redis (its news dropped with a failed round, or
    met while fallen back) is published on the resync: the fleet waits out the rest."""
    async with two_linked(prefix) as (srv, a, b):
        if when.startswith("posted"):
            a.state.cooldown.start(30.0)  # news posted while linked...
            srv.kill()
            assert not await a.store.sync()  # ...and dropped with the round that failed
        else:
            srv.kill()
            assert not await a.store.sync()
            a.state.cooldown.start(30.0)  # nothing to post to: kept locally
        srv.start()
        await relink([a, b])
        await step([a, b])
        assert 20.0 < b.state.cooldown.remaining() <= 30.0


async def test_the_retry_budget_counts_the_whole_fleet(members: list[Member]) -> None:
    a, b, _ = members
    budget = b.state.budget
    b.state.begin(b.sw.clock())  # b uses the key too: the floor is shared by both
    alone = budget.balance()
    for _ in range(40):
        a.state.begin(a.sw.clock())
        assert a.state.budget.try_spend()  # a retries a lot (within its own floor and ratio)
    await step(members)
    # b's balance now counts a's retries and a's requests' deposits, and the floor
    # is shared by the two processes that use the key.
    policy = POLICY.budget
    floor = policy.min_retries_per_second * policy.window
    expected = alone - floor + floor / 2 + 40 * policy.ratio - 40
    assert (budget.others, budget.members) == ((40, 40), 2), (budget.others, budget.members)
    assert budget.balance() == pytest.approx(expected)
    assert budget.balance() < alone


async def test_costs_add_up_across_the_fleet(server: RedisServer, prefix: str) -> None:
    made = [Member(server.url, prefix) for _ in range(2)]
    try:
        for i, m in enumerate(made):
            usage = Usage("gpt-4o-mini", "openai", "chat", 1000 * (i + 1), 10)
            m.sw.cost_tracker.record("https://api.openai.com", usage)
        await exchange_costs(made)
        fleet = made[0].sw.costs(scope="fleet")
        mine = made[0].sw.costs()
        assert mine.input_tokens == 1000
        assert fleet.input_tokens == 3000
        model = fleet.by_key["https://api.openai.com"].models["gpt-4o-mini"]
        assert model.calls == 2
        other = made[1].sw.costs()
        assert fleet.cost_usd == mine.cost_usd + other.cost_usd
        assert fleet.cost_usd > mine.cost_usd
    finally:
        for m in made:
            await m.sw.aclose()
    with pytest.raises(ValueError, match="state="):
        Seawall(entrypoints=False).costs(scope="fleet")
    with pytest.raises(ValueError, match="'process'"):
        Seawall(entrypoints=False).costs(scope="everything")


async def test_an_idle_key_is_read_less_often(
    members: list[Member], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleet_store, "IDLE_EVERY", 10)
    a, b, _ = members
    a.state.cooldown.start(3.0)
    await a.store.sync()
    await b.store.sync()  # b has not called the key since its last read: not read now
    assert b.state.cooldown.remaining() == 0
    b.state.begin(b.sw.clock())  # a call: the key is busy, read at the next round
    await b.store.sync()
    assert b.state.cooldown.remaining() > 2


def test_bad_state_arguments_say_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"redis://127\.0\.0\.1:6379/0"):
        Seawall(state="http://x", entrypoints=False)
    with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis"):
        Seawall(state=42, entrypoints=False)
    with pytest.raises(ValueError, match="prefix"):
        Seawall(state=Fleet("redis://127.0.0.1/0", prefix=""), entrypoints=False)


def test_state_table_in_toml() -> None:
    sw = Seawall.from_config(
        {"state": {"url": "redis://127.0.0.1:1/0", "prefix": "app"}}, entrypoints=False
    )
    assert isinstance(sw.store, FleetStore)
    assert sw.store.prefix == "app"
    with pytest.raises(ConfigError, match=r"state\.url"):
        load_config({"state": {"url": "http://nope"}})
    with pytest.raises(ConfigError, match=r"state\.prefixx"):
        load_config({"state": {"url": "redis://h/0", "prefixx": "a"}})
    assert Seawall(entrypoints=False).health().state == "local"


async def test_a_round_with_nothing_to_read_still_notices_a_stalled_redis(prefix: str) -> None:
    """Every round asks Redis something (a PING when there is nothing to read or publish),
    so a Redis that stopped answering is noticed within one round whatever the traffic."""
    srv = redis_server()
    sw = Seawall(entrypoints=False, state=Fleet(srv.url, prefix=prefix, refresh=5.0, timeout=0.2))
    try:
        store = sw.store
        assert isinstance(store, FleetStore)
        assert await store.sync()  # linked; no key, no costs: nothing to read
        srv.pause()  # SIGSTOP: connections stay open, nothing is answered
        try:
            assert not await store.sync()
        finally:
            srv.resume()
        assert sw.health().state == "local-fallback"
    finally:
        await sw.aclose()
        srv.kill()
