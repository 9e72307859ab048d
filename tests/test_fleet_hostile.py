"""The sixth audit: a hostile or unhealthy Redis under a fleet (docs/architecture.md).

Values under seawall's keys that seawall did not write and that never expire
(another app's data, an old layout), a Redis that refuses writes (full, or a
read-only replica after a failover), and what a ``Fleet`` shows of its URL.
Each test ran against the code before its fix and failed there.
"""

from __future__ import annotations

import logging
import uuid

import pytest
import redis.asyncio as aioredis

from seawall.breaker import BreakerState
from tests._helpers import Clock
from tests._redis import RedisServer, redis_server, server_fixture
from tests.test_fleet import LEASE_POLICY, Member, step

server = server_fixture()

#: A time in Redis's milliseconds some 30,000 years ahead: no seawall writes it.
FAR = 10**15

#: Rounds a fleet gets to do something (bounded loops).
ROUNDS = 5


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
    """A fleet's open with a due time far ahead and two votes that never expire (values
    seawall did not write): a member adopts the open, but probes within its own recovery
    interval, and its probe's close clears the votes. Before, the member took the due as
    it was: the key stayed open for good, after the values were gone, and on fallback."""
    await client.hset(f"{prefix}:{{k}}:b", mapping={"due": FAR, "gen": 0})
    await client.hset(f"{prefix}:{{k}}:v", mapping={"x1": FAR, "x2": FAR})
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
