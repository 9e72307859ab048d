"""The sixth audit: a hostile or unhealthy Redis under a fleet (docs/architecture.md).

Values under seawall's keys that seawall did not write and that never expire
(another app's data, an old layout), a Redis that refuses writes (full, or a
read-only replica after a failover), and what a ``Fleet`` shows of its URL.
Each test ran against the code before its fix and failed there.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from seawall.breaker import BreakerState
from seawall.fleet import Fleet, totals
from seawall.fleet import store as fleet_store
from seawall.llm.usage import Usage
from tests._helpers import Clock
from tests._redis import RedisServer, redis_server, server_fixture
from tests.test_fleet import LEASE_POLICY, Member, relink, step

server = server_fixture()

#: A time in Redis's milliseconds some 30,000 years ahead: no seawall writes it.
FAR = 10**15

#: An hour in milliseconds.
HOUR = 3_600_000

#: Rounds a fleet gets to do something (bounded loops).
ROUNDS = 5


@pytest.fixture(autouse=True)
def _read_idle_keys_every_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle keys are read every round here (each ``IDLE_EVERY``-th round otherwise)."""
    monkeypatch.setattr(fleet_store, "IDLE_EVERY", 1)


@pytest.fixture
def prefix() -> str:
    return f"h{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def client(server: RedisServer) -> aioredis.Redis:
    made = aioredis.Redis.from_url(server.url)
    yield made
    await made.aclose()


async def test_a_fleet_open_due_far_ahead_is_probed_on_the_own_interval(
    server: RedisServer, prefix: str, client: aioredis.Redis
) -> None:
    """A fleet's open due an hour ahead, with two votes (another member's longer recovery,
    or values seawall did not write): a member adopts the open, but probes within its own
    recovery interval, and its probe's close clears the votes. Before, the member took the
    due as it was (10**15 ms: the key stayed open for good, after the values were gone, and
    on fallback, since the breaker's own clock resumed at that due)."""
    (now_s, now_us) = await client.time()
    hour_ahead = now_s * 1000 + now_us // 1000 + HOUR
    await client.hset(f"{prefix}:{{k}}:b", mapping={"due": hour_ahead, "gen": 0})
    await client.hset(f"{prefix}:{{k}}:v", mapping={"x1": hour_ahead, "x2": hour_ahead})
    for part in "bv":  # (within the horizon, with TTLs: as seawall's would be)
        await client.pexpire(f"{prefix}:{{k}}:{part}", HOUR)
    clock = Clock()
    member = Member(server.url, prefix, LEASE_POLICY, clock)
    try:
        await step([member])
        breaker = member.breaker
        assert breaker.state is BreakerState.OPEN  # (two votes: the fleet is open)
        recovery = LEASE_POLICY.breaker.recovery_timeout
        clock.now += recovery + 0.01
        for _ in range(ROUNDS):  # bounded: the lease is asked for once the due has passed
            await member.store.sync()
            if not breaker.awaiting:
                break
        permit = breaker.admit()
        assert permit is not None, "the adopted open was never probed"
        assert permit.probe
        breaker.record(permit, failure=False)
        assert breaker.state is BreakerState.CLOSED
        await step([member])
        assert await client.exists(f"{prefix}:{{k}}:v") == 0  # the close dropped the votes
        assert breaker.state is BreakerState.CLOSED
    finally:
        await member.sw.aclose()


@pytest.mark.parametrize(
    "poison",
    [
        pytest.param((FAR, None), id="no TTL"),
        pytest.param((FAR, 3_600_000), id="an end after its TTL"),
        pytest.param((None, 2 * 86_400_000), id="a TTL beyond a day"),
    ],
)
async def test_a_cooldown_seawall_did_not_write_pauses_no_key(
    server: RedisServer, prefix: str, client: aioredis.Redis, poison: tuple[int | None, int | None]
) -> None:
    """A ``c`` that no COOL wrote (COOL's end and TTL agree, within a day) is deleted, not
    adopted: before, every member paused the key for its whole ``retry_after_max`` at
    each read, for as long as the value stayed (for good, with no TTL), and a member's
    own 429 rewrote it with a TTL of that length."""
    end, ttl = poison
    cool = f"{prefix}:{{k}}:c"
    if end is None:  # consistent with its TTL, but two days ahead
        await client.set(cool, 0, px=ttl)
        (now_s, now_us) = await client.time()
        await client.set(cool, now_s * 1000 + now_us // 1000 + ttl, px=ttl)
    else:
        await client.set(cool, end, px=ttl)
    members = [Member(server.url, prefix) for _ in range(2)]
    try:
        await step(members)
        assert all(m.state.cooldown.remaining() == 0 for m in members)
        assert await client.exists(cool) == 0
        # A 429's wait after it is shared as before, with its own end and TTL.
        members[0].state.cooldown.start(20.0)
        await step(members)
        assert 15 < members[1].state.cooldown.remaining() <= 20
        assert 15_000 < await client.pttl(cool) <= 20_000
    finally:
        for m in members:
            await m.sw.aclose()


async def test_the_cooldown_wait_of_a_429_does_not_take_on_a_foreign_end(
    server: RedisServer, prefix: str, client: aioredis.Redis
) -> None:
    """A member's 429 meets a ``c`` no COOL wrote: its wait replaces it (before, the later
    end won and was written back with a TTL of some 30,000 years)."""
    cool = f"{prefix}:{{k}}:c"
    await client.set(cool, FAR)
    member = Member(server.url, prefix)
    try:
        member.state.cooldown.start(5.0)
        await member.store.sync()
        assert 0 < await client.pttl(cool) <= 5_000
    finally:
        await member.sw.aclose()


@pytest.mark.parametrize("ttl", [None, 2 * 86_400_000], ids=["no TTL", "a TTL beyond a day"])
async def test_a_probe_lease_seawall_did_not_give_blocks_no_probe(
    server: RedisServer, prefix: str, client: aioredis.Redis, ttl: int | None
) -> None:
    """A ``p`` with no TTL (or one beyond a day) is no lease: before, no member ever won the
    lease, and every open breaker of the key stayed open while Redis answered."""
    await client.set(f"{prefix}:{{k}}:p", "someone", px=ttl)
    clock = Clock()
    members = [Member(server.url, prefix, LEASE_POLICY, clock) for _ in range(2)]
    try:
        for m in members:
            m.fail(2)
        await step(members)
        assert all(m.breaker.state is BreakerState.OPEN for m in members)
        clock.now += 2 * LEASE_POLICY.breaker.recovery_timeout
        granted: list[Member] = []
        for _ in range(ROUNDS):  # bounded
            await step(members)
            granted = [m for m in members if not m.breaker.awaiting]
            if granted:
                break
        assert len(granted) == 1, "no member won the fleet's probe lease"
        assert 0 < await client.pttl(f"{prefix}:{{k}}:p") <= 2_500
    finally:
        for m in members:
            await m.sw.aclose()


@pytest.mark.parametrize("refusal", ["full (OOM)", "a read-only replica"])
async def test_a_redis_that_refuses_writes_is_out_of_reach_not_a_bad_value(
    prefix: str, refusal: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A full Redis (``maxmemory``, noeviction) or a read-only replica (a failover left the
    URL on the old primary) refuses every script: the store falls back and says Redis is
    out of reach, then shares again when writes are taken. Before, the refusal's text
    (it names ``@user_script``) was read as a bad value under each key: ``health()``
    said "shared" while nothing was, and the log blamed the data."""
    srv = redis_server()
    primary = redis_server() if refusal == "a read-only replica" else None
    admin = aioredis.Redis.from_url(srv.url)
    member = Member(srv.url, prefix)
    caplog.set_level(logging.INFO, logger="seawall")
    try:
        assert await member.store.sync()
        if primary is None:
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", 1)
        else:
            await admin.replicaof("127.0.0.1", primary.port)
        member.state.cooldown.start(5.0)  # news to publish: a write
        assert not await member.store.sync()
        assert member.sw.health().state == "local-fallback"
        texts = [r.getMessage() for r in caplog.records if r.name.startswith("seawall")]
        assert [t for t in texts if "out of reach" in t], texts
        assert not [t for t in texts if "not one seawall wrote" in t], texts
        if primary is None:
            await admin.config_set("maxmemory", 0)
        else:
            await admin.replicaof("no", "one")
        await relink([member])  # (bounded: the link's breaker lets a round through in ~0.5 s)
        assert member.sw.health().state == "shared"
    finally:
        await admin.aclose()
        await member.sw.aclose()
        srv.kill()
        if primary is not None:
            primary.kill()


def test_a_fleets_repr_shows_no_secret() -> None:
    """``repr(Fleet(url))`` (logged with a config, shown in a traceback's locals) showed
    the URL as given, password included."""
    fleet = Fleet("redis://app:s3cret-pw@redis.internal:6379/0?password=q-secret", prefix="x")
    shown = repr(fleet)
    assert "s3cret" not in shown
    assert "q-secret" not in shown
    assert "redis.internal:6379/0" in shown
    assert "prefix='x'" in shown


async def test_a_rate_with_no_ttl_is_not_the_fleets_pace(
    server: RedisServer, prefix: str, client: aioredis.Redis
) -> None:
    """An ``r`` hash with no TTL (every RATE sets one) holding a rate of 0.001/s: before,
    each member that called the key paced it at its floor (one call per ``max_wait``)
    for good, and a member's 429 gave the value a TTL that its reads then renewed."""
    await client.hset(f"{prefix}:{{k}}:r", mapping={"r": "0.001"})
    members = [Member(server.url, prefix) for _ in range(2)]
    try:
        for m in members:
            m.state.cooldown.reserve(1.0)  # callers: each member paces the key
        await step(members)
        assert all(m.state.cooldown.shared is None for m in members)
        assert await client.exists(f"{prefix}:{{k}}:r") == 0
    finally:
        for m in members:
            await m.sw.aclose()


async def test_members_and_votes_far_ahead_are_not_counted(
    server: RedisServer, prefix: str, client: aioredis.Redis
) -> None:
    """Entries in ``m``, ``v`` and ``u`` that expire further ahead than seawall writes (a
    day), in hashes with TTLs: before, 1,000 such members cut each member's share of the
    fleet's rate to a thousandth, two such votes opened the fleet on one real vote (the
    partition guard undone: b opened with no failure of its own), and a budget row of
    10**12 requests made every member's retry budget endless."""
    await client.hset(f"{prefix}:{{k}}:m", mapping={f"n{i}": FAR for i in range(1000)})
    await client.hset(f"{prefix}:{{k}}:v", mapping={"x1": FAR, "x2": FAR})
    await client.hset(f"{prefix}:{{k}}:u", mapping={"x": f"{FAR}:{10**12}:0"})
    for part in "mvu":
        await client.pexpire(f"{prefix}:{{k}}:{part}", HOUR)
    a, b = members = [Member(server.url, prefix) for _ in range(2)]
    try:
        b.state.cooldown.reserve(1.0)  # a caller: b paces the key
        a.fail(2)  # a opens and votes: one real vote
        await step(members)
        await step(members)
        assert b.state.cooldown.members == 1
        assert b.breaker.state is BreakerState.CLOSED  # one vote, no evidence of b's own
        assert b.state.budget.others == (0, 0)  # type: ignore[attr-defined]
        assert b.state.budget.balance() < 100
    finally:
        for m in members:
            await m.sw.aclose()


async def _exchange_costs(members: list[Member], rounds: int = 2) -> None:
    for _ in range(rounds):
        for m in members:
            m.store.costs_due()
            await m.store.sync()


async def test_the_reports_of_a_days_dead_workers_are_parsed_once(
    server: RedisServer, prefix: str, client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers recycled all day (gunicorn ``max_requests``) leave their cost reports for a
    day; every member read and parsed every one of them every second, on its event loop
    (1,000 reports of 3 keys: a 0.12 s stall each second; 3,000: 0.35 s, and rounds past
    the time limit fell back). Now a member is sent the reports written since its last
    read (at most ``COSTS_SLICE`` a round), and keeps the rest as parsed; the fleet's
    totals still count them."""
    report = json.dumps(_one_report()).encode()
    (now_s, now_us) = await client.time()
    until = now_s * 1000 + now_us // 1000 + 86_000_000
    await client.hset(
        f"{prefix}:{{costs}}", mapping={f"dead-{i}": b"%d|%s" % (until, report) for i in range(300)}
    )
    parsed: list[str] = []
    real = totals.loads

    def counted(text: str) -> Any:
        parsed.append(text)
        return real(text)

    monkeypatch.setattr(totals, "loads", counted)
    member = Member(server.url, prefix)
    member.store.costs_due()
    try:
        for _ in range(10):  # bounded: slices (``COSTS_SLICE``), one a round
            await member.store.sync()
        assert len(parsed) == 300
        await _exchange_costs([member], rounds=3)
        assert len(parsed) == 300, "unchanged reports were parsed again"
        assert member.sw.costs(scope="fleet").input_tokens == 300 * 1000
    finally:
        await member.sw.aclose()


async def test_a_report_redis_lost_is_published_again(
    server: RedisServer, prefix: str, client: aioredis.Redis
) -> None:
    """A member publishes its cost report only when it changed: after a FLUSHALL (or a
    restart), an idle member's report never came back, and the fleet's totals lost its
    costs. Now the exchange says the report is missing, and it is sent again."""
    a, b = members = [Member(server.url, prefix) for _ in range(2)]
    try:
        usage = Usage("gpt-4o", "openai", "chat", 1000, 10)
        a.sw.cost_tracker.record("https://api.openai.com", usage)
        await _exchange_costs(members)
        assert b.sw.costs(scope="fleet").input_tokens == 1000
        await client.flushall()
        await _exchange_costs(members, rounds=3)
        assert b.sw.costs(scope="fleet").input_tokens == 1000
    finally:
        for m in members:
            await m.sw.aclose()


def _one_report() -> dict[str, Any]:
    """One process's cost report as ``dumps`` writes it: 1,000 input tokens."""
    model = {
        "calls": 1,
        "input_tokens": 1000,
        "output_tokens": 10,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cost_usd": "0.01",
        "unpriced_calls": 0,
    }
    key = {
        "models": {"gpt-4o": model},
        "cost_usd": "0.01",
        "calls": 1,
        "failed_attempts": 0,
        "waited_seconds": 0.0,
        "avoided_calls": {"breaker": 0, "cooldown": 0},
    }
    return {
        "cost_usd": "0.01",
        "calls": 1,
        "input_tokens": 1000,
        "output_tokens": 10,
        "keys": {"https://api.openai.com": key},
    }
