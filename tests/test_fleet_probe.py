"""The fleet's early probe against a real redis-server: after a rate limit lifts, a fleet that
paces a key (whole-seconds ``Retry-After``, no rate headers) probes as one, not after ``HOLD``;
and between probes, the fleet's rate holds its plateau and comes down from one that did not fit.

Each member runs on its own test clock; Redis keeps the fleet's time (``TIME`` in the
scripts), so a test *ages* the shared state (moves the rate hash's stamps back) instead of
sleeping. Members are stepped with ``store.sync()`` (one round trip each).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from seawall.fleet import store as fleet_store
from seawall.fleet.pacing import FLEET_CUT, FleetCooldown
from seawall.learnt_pace import EARLY_CAP
from tests._helpers import Clock
from tests._redis import RedisServer, server_fixture
from tests.test_fleet import Member, step

#: The fleet's rate after a 429 saying "wait 10 ms": LEVEL x 100/s.
LEVEL = 97.0

#: A 429 met by the probe cuts to this share of what was sent (``seawall.fleet.pacing``'s
#: ``PROBE_CUT``; spelt out, so that this module also runs against code without it).
PROBE_CUT = 0.75


server = server_fixture()


@pytest.fixture(autouse=True)
def _read_idle_keys_every_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle keys are read every round here (each ``IDLE_EVERY``-th round otherwise)."""
    monkeypatch.setattr(fleet_store, "IDLE_EVERY", 1)


class Fleet2:
    """Two members (``a``, ``b``), each on its own test clock, and a client to look at Redis."""

    def __init__(self, url: str) -> None:
        prefix = f"e{uuid.uuid4().hex[:8]}"
        self.clocks = (Clock(), Clock())
        self.a = Member(url, prefix, clock=self.clocks[0])
        self.b = Member(url, prefix, clock=self.clocks[1])
        self.members = [self.a, self.b]
        self.key = f"{prefix}:{{k}}:r"
        self.client = aioredis.Redis.from_url(url)

    def cooldown(self, m: Member) -> FleetCooldown:
        assert isinstance(m.state.cooldown, FleetCooldown)
        return m.state.cooldown

    async def paced(self) -> None:
        """Both members pace the key at the fleet's rate from a 10 ms wait (97/s)."""
        for m in self.members:
            assert await m.store.sync()
            m.state.cooldown.reserve()
        await step(self.members)
        self.a.state.cooldown.start(0.01)
        await step(self.members)
        assert self.cooldown(self.a).shared == (pytest.approx(LEVEL), 2)

    async def costly(self) -> None:
        """Paced at 97/s as after a costly cut (a 429 that paused for whole seconds, ``h``):
        the rate holds after it."""
        await self.paced()
        await self.client.hset(self.key, "h", 1)

    async def probing(self) -> None:
        """Paced, then ``a``'s callers crowd: the fleet's probe runs, 2 s old (4x the level),
        and ``a`` is asked for turns at 100/s (its demand)."""
        await self.paced()
        await self.age(2.0)  # the cut is 2 s old: older than EARLY_PROBE
        self.crowd(self.a)
        await step(self.members)
        await self.age(2.0)  # the probe is 2 s old: two doublings
        self.crowd(self.a, seconds=0.5)  # (demand still 100/s here)
        await step(self.members)

    async def rate(self) -> dict[str, float]:
        stored = await self.client.hgetall(self.key)
        return {k.decode(): float(v) for k, v in stored.items()}

    async def age(self, seconds: float, *fields: str) -> None:
        """The fleet's state ``seconds`` older: its stamps moved back (no sleeping)."""
        stored = await self.rate()
        shift = round(seconds * 1000)
        for field in fields or ("at", "cut", "e", "x"):
            if stored.get(field, 0) > 0:
                await self.client.hset(self.key, field, int(stored[field]) - shift)

    def crowd(self, m: Member, per_second: float = 100.0, seconds: float = 2.0) -> float:
        """Callers ask ``m`` for turns at ``per_second`` for ``seconds`` (its clock runs), then
        one with a deadline of 2 s asks: the seconds it would wait."""
        clock = self.clocks[self.members.index(m)]
        for _ in range(round(per_second * seconds)):
            clock.advance(1.0 / per_second)
            m.state.cooldown.reserve()
        return m.state.cooldown.reserve(max_wait=2.0)

    async def aclose(self) -> None:
        for m in self.members:
            await m.sw.aclose()
        await self.client.aclose()


@pytest.fixture
async def fleet(server: RedisServer) -> AsyncIterator[Fleet2]:
    made = Fleet2(server.url)
    yield made
    await made.aclose()


async def test_crowding_in_one_member_starts_a_probe_every_member_sees(fleet: Fleet2) -> None:
    """One member's crowded callers start the probe in Redis; every member paces to it and
    books its waiting turns again."""
    await fleet.paced()
    await fleet.age(2.0)  # the cut is 2 s old: older than EARLY_PROBE
    a, b = fleet.cooldown(fleet.a), fleet.cooldown(fleet.b)
    cuts = (a.cuts, b.cuts)
    assert fleet.crowd(fleet.a) > 0.5  # 100/s asked for against a share of 48.5/s
    await step(fleet.members)
    stored = await fleet.rate()
    assert stored["e"] > stored["cut"]
    assert stored["p"] == pytest.approx(LEVEL, rel=0.01)
    for cooldown, before in zip((a, b), cuts, strict=True):
        assert cooldown.probe == pytest.approx(LEVEL, rel=0.01)
        assert cooldown.cuts > before  # turns booked at the level are void


async def test_the_probe_doubles_each_second_capped_per_process_by_its_demand(
    fleet: Fleet2,
) -> None:
    """The shared rate doubles every second from the level (at most 6 times); each process
    paces its share, capped at 1.2x its own demand, and never under the level's share."""
    await fleet.probing()  # 2 s old: two doublings
    a, b = fleet.cooldown(fleet.a), fleet.cooldown(fleet.b)
    assert a.shared is not None
    assert b.shared is not None
    assert a.shared[0] == pytest.approx(4 * LEVEL, rel=0.05)
    assert b.shared[0] == pytest.approx(4 * LEVEL, rel=0.05)
    demand = a.demand(fleet.clocks[0].now)
    assert demand == pytest.approx(100.0, rel=0.1)
    assert a.rate == pytest.approx(EARLY_CAP * demand)  # not 2 x 97/s: no herd
    assert b.rate == pytest.approx(LEVEL / 2, rel=0.01)  # no demand measured: the level's share
    cuts = a.cuts
    await fleet.age(10.0)  # 12 s: capped at 6 doublings
    await step(fleet.members)
    assert a.shared[0] == pytest.approx(64 * LEVEL, rel=0.01)
    assert a.cuts == cuts  # a share capped by the demand grew no more: turns stand


async def test_a_429_met_by_the_probe_cuts_to_three_quarters_of_sent_and_backs_off(
    fleet: Fleet2,
) -> None:
    """The probe's 429 cuts the shared rate to 0.75 x what was sent (not under the level) and
    ends the probe; probes that meet the same limit wait 4 s, then ``HOLD`` (15 s) at most."""
    await fleet.probing()
    a = fleet.cooldown(fleet.a)
    assert a.rate is not None
    sent = 2 * a.rate  # this process's share, demand-capped, per member: 240/s
    a.start(1.0)  # a whole-seconds Retry-After: no bound, a cut
    cut = PROBE_CUT * sent
    assert a.probe == 0.0
    assert a.shared == (pytest.approx(cut), 2)  # taken here at once
    await step(fleet.members)
    stored = await fleet.rate()
    assert stored["r"] == pytest.approx(cut, rel=0.01)
    assert stored["e"] <= stored["cut"]  # the probe is over
    assert stored["q"] == 0  # it found a higher limit: no miss
    assert stored["x"] - stored["cut"] == 1000
    b = fleet.cooldown(fleet.b)
    assert b.probe == 0.0
    assert b.shared is not None
    assert b.shared[0] == pytest.approx(cut, rel=0.01)
    # Probes that meet the same limit at once: each backs the next one off 4x, up to HOLD.
    waits = []
    for _ in range(4):
        await fleet.age(61.0, "cut", "x")  # the backoff has passed
        fleet.clocks[0].advance(1.5)  # past this process's 1 s pause
        fleet.crowd(fleet.a, per_second=400.0, seconds=0.5)
        await step(fleet.members)
        assert a.probe > 0
        a.start(1.0)  # met at once: the same limit
        await step(fleet.members)
        stored = await fleet.rate()
        assert a.probe == 0.0
        assert stored["r"] >= stored["p"]  # never under the probe's level
        waits.append(stored["x"] - stored["cut"])
    assert waits == [4000, 15000, 15000, 15000]
    await fleet.age(10.0, "cut", "x")  # within the backoff: crowded callers start no probe
    fleet.clocks[0].advance(1.5)
    fleet.crowd(fleet.a, per_second=400.0, seconds=0.5)
    await step(fleet.members)
    assert a.probe == 0.0
    assert (await fleet.rate())["e"] <= stored["cut"]


async def test_no_probe_while_not_crowded_nor_right_after_a_cut(fleet: Fleet2) -> None:
    """Callers served at the share, or a cut under ``EARLY_PROBE`` old, start no probe; the
    same callers crowded after that do."""
    await fleet.paced()
    await fleet.age(2.0)
    assert fleet.crowd(fleet.a, per_second=40.0) < 0.05  # under the share (48.5/s): served
    await step(fleet.members)
    assert "e" not in await fleet.rate()
    assert fleet.cooldown(fleet.a).probe == 0.0
    # (the fleet's cuts are spaced 5 refreshes apart: 25 s here; the rate has risen back)
    await fleet.age(30.0, "cut", "at")
    fleet.cooldown(fleet.b).start(1.0)  # a cut now (the level's 429): 0.9 x the rate
    await step(fleet.members)
    stored = await fleet.rate()
    assert stored["r"] == pytest.approx(FLEET_CUT * LEVEL, rel=0.01)
    fleet.crowd(fleet.a)  # crowded, but the cut is fresh
    await step(fleet.members)
    assert "e" not in await fleet.rate()
    await fleet.age(1.0)
    fleet.crowd(fleet.a, seconds=0.5)  # the cut is a second old: the probe starts
    await step(fleet.members)
    assert "e" in await fleet.rate()
    assert fleet.cooldown(fleet.a).probe > 0


async def test_redis_gone_mid_probe_falls_back_to_the_level_and_nobody_waits() -> None:
    """Redis dies while the fleet probes: members fall back to in-process state at the
    probe's level (what surely fitted); no caller waits on Redis."""
    srv = RedisServer()
    srv.start()
    fleet = Fleet2(srv.url)
    try:
        await fleet.probing()
        a = fleet.cooldown(fleet.a)
        assert a.probe > 0
        assert a.rate is not None
        assert a.rate > LEVEL
        srv.kill()
        assert not await fleet.a.store.sync()
        assert fleet.a.sw.health().state == "local-fallback"
        assert a.probe == 0.0
        assert a.rate == pytest.approx(LEVEL / 2, rel=0.01)  # the level's share, held
        started = time.monotonic()
        waits = [a.reserve(max_wait=2.0) for _ in range(50)]  # no I/O: turns at once
        assert time.monotonic() - started < 0.05
        # Turns one share apart (from the end of the 10 ms pause of ``paced``, if Redis's
        # clock, which runs in real time, has not passed it yet: the members' clocks do not).
        assert waits[1] - waits[0] == pytest.approx(2 / LEVEL, rel=0.01)
        assert waits[0] <= 0.011
        a.start(1.0)  # its own 429s cut it here, meanwhile
        assert a.rate == pytest.approx(FLEET_CUT * LEVEL / 2, rel=0.01)
    finally:
        await fleet.aclose()
        srv.kill()


async def test_a_cut_by_a_member_of_an_older_version_ends_the_probe(fleet: Fleet2) -> None:
    """An older member knows no probe: its ``RATE`` writes ``r``, ``w``, ``at`` and ``cut``
    only (and its ``READ`` ignores ``e``, ``p``, ``q``, ``x``); a cut it stamps after the
    probe's start ends the probe for every member of this version."""
    await fleet.paced()
    await fleet.age(2.0)
    fleet.crowd(fleet.a)
    await step(fleet.members)
    assert fleet.cooldown(fleet.b).probe > 0
    now_ms = int((await fleet.client.time())[0]) * 1000 + 1000  # (later than the probe's start)
    await fleet.client.hset(fleet.key, mapping={"r": 87.3, "w": 97.0, "at": now_ms, "cut": now_ms})
    await step(fleet.members)
    for m in fleet.members:
        cooldown = fleet.cooldown(m)
        assert cooldown.probe == 0.0
        assert cooldown.shared is not None
        assert cooldown.shared[0] == pytest.approx(87.3, rel=0.01)


# --- The fleet's rate between probes, on a standing whole-seconds limit -----------------
#
# Every 429 under the fleet's pace pauses the whole fleet for its ``Retry-After``
# (a second at least, when the upstream says only whole seconds): a fleet rate that
# goes on probing upward a few seconds after each cut, or comes down from a rate
# far too high by 10 % per pause, spends much of its time paused. Two rules here:
#
# - after a cut (or a bound) the rate rises back to its plateau and *holds* it for
#   ``RATE_HOLD_MS`` (``HOLD``, as in one process) before it probes upward;
# - a new overshoot while the rate still rises back from the last cut says that
#   cut did not bring it under the limit: the rate stays at the new cut (no
#   plateau above it), the next such cut in a row goes to ``RATE_AGAIN_CUT`` of
#   the rate, and each counts as a miss of the early probe (its backoff grows).

#: Spelt out (``seawall.fleet.scripts``), so that this module runs against code without them.
HOLD_S = 15.0
AGAIN_CUT = 0.75

#: Seconds by which a test moves the last cut back so that Redis takes the next one: the
#: fleet's cuts are spaced 5 refreshes apart (25 s with ``Member``'s 5 s refresh).
SPACED = 30.0


async def shared_rate(fleet: Fleet2) -> float:
    """The fleet's rate now, as both members read it in a round."""
    await step(fleet.members)
    rates = [fleet.cooldown(m).shared for m in fleet.members]
    assert rates[0] is not None
    assert rates[1] is not None
    assert rates[0][0] == pytest.approx(rates[1][0], rel=0.001)
    return rates[0][0]


async def test_the_rate_holds_its_plateau_after_a_costly_cut_then_probes_slowly(
    fleet: Fleet2,
) -> None:
    """After a cut whose 429 paused the fleet for whole seconds: not a step upward for
    ``HOLD`` s; then slowly upward."""
    await fleet.costly()
    await fleet.age(4.0)
    assert await shared_rate(fleet) == pytest.approx(LEVEL, rel=0.001)
    await fleet.age(HOLD_S - 4.0 - 1.0)  # 14 s after the cut: still held
    assert await shared_rate(fleet) == pytest.approx(LEVEL, rel=0.001)
    await fleet.age(9.0)  # 23 s: up, slowly (doubling in 60 s from the end of the hold)
    grown = await shared_rate(fleet)
    assert LEVEL * 1.05 < grown < LEVEL * 2 ** (8.5 / 60)


async def test_after_a_refill_interval_the_rate_probes_upward_without_a_hold(
    fleet: Fleet2,
) -> None:
    """A 429 that states a refill interval paused the fleet for milliseconds: probing past
    the limit costs that little, so the rate grows again from the end of its rise."""
    await fleet.paced()  # a 10 ms wait: the fleet's rate is 97/s, a bound
    await fleet.age(8.0)
    grown = await shared_rate(fleet)
    assert grown == pytest.approx(LEVEL * 2 ** (5.0 / 60), rel=0.01)


async def test_a_new_overshoot_while_rising_back_stays_cut_and_the_next_goes_deeper(
    fleet: Fleet2,
) -> None:
    """A cut that did not get under the limit is no plateau to rise back to."""
    await fleet.costly()
    await fleet.age(4.0)  # risen, held at 97/s
    await fleet.age(SPACED, "cut")
    a, b = fleet.cooldown(fleet.a), fleet.cooldown(fleet.b)
    fleet.clocks[0].advance(2.0)
    a.start(1.0)  # a 429 at the plateau: a dip back to it (the host's jitter, once)
    await step(fleet.members)
    stored = await fleet.rate()
    assert stored["r"] == pytest.approx(FLEET_CUT * LEVEL, rel=0.001)
    assert stored["w"] == pytest.approx(LEVEL, rel=0.001)
    await fleet.age(1.0)  # a second later, still rising back: the overshoot again
    await fleet.age(SPACED, "cut")
    rising = await shared_rate(fleet)
    assert FLEET_CUT * LEVEL < rising < LEVEL
    fleet.clocks[1].advance(2.0)
    b.start(1.0)
    await step(fleet.members)
    stored = await fleet.rate()
    cut = FLEET_CUT * rising
    assert stored["r"] == pytest.approx(cut, rel=0.01)
    assert stored["w"] == stored["r"]  # no rise back to the plateau that did not fit
    assert stored["q"] == 1  # an early probe waits longer: 4 s after this cut
    assert stored["x"] - stored["cut"] == 4000
    await fleet.age(1.0)
    assert await shared_rate(fleet) == pytest.approx(cut, rel=0.01)  # flat, not rising
    await fleet.age(SPACED, "cut")
    fleet.clocks[0].advance(2.0)
    a.start(1.0)  # the second in a row: deeper
    await step(fleet.members)
    stored = await fleet.rate()
    assert stored["r"] == pytest.approx(AGAIN_CUT * cut, rel=0.01)
    assert stored["w"] == stored["r"]
    assert stored["q"] == 2
    assert stored["x"] - stored["cut"] == HOLD_S * 1000  # 16 s, capped at HOLD


async def test_a_429_of_the_same_overshoot_is_no_new_one(fleet: Fleet2) -> None:
    """A 429 under ``RATE_AGAIN_MS`` after a cut (an answer to a send at the old rate; with
    the default refresh the fleet's cut spacing already ignores it) lowers the plateau as
    before, and is not taken for a new overshoot."""
    link = fleet.a.store.link
    keys = [fleet.key[: -len("r")] + part for part in "bvcr"]

    async def rate(value: float, *, bound: bool = False) -> dict[str, float]:
        # rate, doubling, ttl, no spacing of cuts, bound, rise 3 s, plateau 0.97 (outbox.py's)
        args = ["n", round(value * 1000), 60_000, 10_000, 0, int(bound), 3000, 970]
        args += [15_000, 0 if bound else 1]  # backoff cap, costly (a whole-seconds 429)
        await link.run([("RATE", keys, args)])
        return await fleet.rate()

    assert (await rate(97.0, bound=True))["w"] == 97.0
    await fleet.client.hset(fleet.key, "h", 1)  # as after a costly cut: held
    await fleet.age(4.0)  # risen back
    stored = await rate(87.3)  # a dip
    assert stored["w"] == 97.0
    await fleet.age(0.3)
    stored = await rate(80.0)
    assert stored["r"] == 80.0
    assert stored["w"] > stored["r"]  # it rises back to a plateau
    assert stored.get("q", 0) == 0  # and delays no early probe
