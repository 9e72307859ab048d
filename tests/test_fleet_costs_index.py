"""The fleet's cost exchange reads an index of write times, not the whole hash.

Each member ran ``COSTS`` every second, and it walked the whole cost hash
(``HGETALL``): about 40 ms of Redis time a call at 3,000 reports of 1.6 KB,
while every other client of that Redis waited. The reports' nodes are now
indexed in a sorted set beside the hash (``<prefix>:{costs}:w``), scored by
when each was written; a call reads the changed reports only. These tests run
the script on a real ``redis-server``: the index kept with the hash, expiry in
slices, the slices' order, healing when one of the two keys is lost or was
written by another version, and values seawall did not write.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seawall import Seawall
from seawall.fleet import Fleet, totals
from seawall.fleet.store import FleetStore
from seawall.fleet.totals import COSTS, COSTS_SLICE, COSTS_TTL
from seawall.llm.usage import Usage
from tests._redis import RedisServer, server_fixture
from tests.test_fleet_hostile import _one_report

server = server_fixture()

TTL = round(COSTS_TTL * 1000)
REPORT = json.dumps(_one_report())


@pytest.fixture(scope="module")
def client(server: RedisServer) -> Iterator[redis.Redis]:
    made = redis.Redis.from_url(server.url)
    yield made
    made.close()


@pytest.fixture
def keys() -> list[str]:
    prefix = f"x{uuid.uuid4().hex[:8]}"
    return [f"{prefix}:{{costs}}", f"{prefix}:{{costs}}:w"]


def _now(client: redis.Redis) -> int:
    s, us = client.time()
    return int(s) * 1000 + int(us) // 1000


def _plant(client: redis.Redis, keys: list[str], written: dict[str, int]) -> None:
    """Reports as the script keeps them: in the hash and its index, with one expiry time."""
    hash_key, index = keys
    client.hset(hash_key, mapping={n: f"{w + TTL}|{REPORT}" for n, w in written.items()})
    client.zadd(index, written)
    end = _now(client) + TTL
    client.pexpireat(hash_key, end)
    client.pexpireat(index, end)


class Caller:
    """One member calling the script directly, following its cursor as ``CostExchange`` does."""

    def __init__(self, client: redis.Redis, keys: list[str], node: str = "me") -> None:
        self.run = client.register_script(COSTS)
        self.keys = keys
        self.node = node
        self.since, self.after = 0, ""

    def call(
        self, mine: str = "", cap: int = COSTS_SLICE, lapse: int = 500, names: str = "1"
    ) -> dict[str, Any]:
        args = [self.node, mine, TTL, self.since, cap, self.after, lapse, names]
        reply = self.run(keys=self.keys, args=args)
        now, missing, since, after, count = reply[:5]
        names = [n.decode() for n in reply[5 : 5 + count]]
        rest = reply[5 + count :]
        sent = [n.decode() for n in rest[::2]]
        # (From now, not a second before as ``CostExchange``: nothing is sent twice here.)
        # A slice is told by its last node: its write time may be the reply's own ms.
        sliced = bool(after) or since < now
        self.since, self.after = (since, after.decode()) if sliced else (now, "")
        return {"missing": missing, "names": names, "sent": sent, "sliced": sliced}


def _held(client: redis.Redis, keys: list[str]) -> tuple[set[str], set[str]]:
    hash_key, index = keys
    return (
        {n.decode() for n in client.hkeys(hash_key)},
        {n.decode() for n in client.zrange(index, 0, -1)},
    )


def test_expired_reports_leave_both_keys_in_slices(client: redis.Redis, keys: list[str]) -> None:
    """Expired reports are deleted from the hash and the index, at most ``lapse`` a call
    (oldest first): a day's backlog does not stall Redis in one call either."""
    now = _now(client)
    _plant(client, keys, {f"dead-{i:04d}": now - TTL - 5000 + i for i in range(1200)})
    _plant(client, keys, {"alive": now - 1000})
    caller = Caller(client, keys)
    left = []
    for _ in range(4):  # bounded: 1,200 at 500 a call
        got = caller.call(lapse=500)
        assert got["names"] == ["alive"]  # expired ones are not live while they wait
        hashed, indexed = _held(client, keys)
        assert hashed == indexed
        left.append(len(hashed))
    assert left == [701, 201, 1, 1]
    assert "dead-0000" not in _held(client, keys)[0]  # (the oldest went first)


def test_slices_come_oldest_first_and_capped(client: redis.Redis, keys: list[str]) -> None:
    """A member's first reads: every report once, in (write time, node) order, at most
    ``cap`` a call, with many written in the same millisecond across a slice's edge."""
    now = _now(client)
    written = {f"n{i:03d}": now - 10_000 + (i // 50) for i in range(250)}  # 50 a ms
    written |= {"z-early": now - 20_000, "a-late": now - 100}
    _plant(client, keys, written)
    caller = Caller(client, keys)
    seen: list[str] = []
    for _ in range(10):  # bounded: 252 at 40 a call
        got = caller.call(cap=40)
        assert len(got["sent"]) <= 40
        seen += got["sent"]
        if not got["sliced"]:
            break
    assert seen == sorted(written, key=lambda n: (written[n], n))
    assert caller.call(cap=40)["sent"] == []  # then nothing changed: nothing sent


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    times=st.lists(st.integers(0, 5), min_size=0, max_size=40),
    cap=st.integers(1, 7),
)
def test_any_slicing_sends_every_report_once_in_order(
    client: redis.Redis, times: list[int], cap: int
) -> None:
    """Whatever the write times (many the same millisecond) and the cap, following the
    cursor sends every live report exactly once, oldest first."""
    prefix = f"h{uuid.uuid4().hex[:8]}"
    keys = [f"{prefix}:{{costs}}", f"{prefix}:{{costs}}:w"]
    now = _now(client)
    written = {f"n{i:02d}": now - 1000 * t for i, t in enumerate(times)}
    if written:
        _plant(client, keys, written)
    caller = Caller(client, keys)
    seen: list[str] = []
    for _ in range(len(times) // cap + 2):  # bounded
        got = caller.call(cap=cap)
        seen += got["sent"]
        if not got["sliced"]:
            break
    assert seen == sorted(written, key=lambda n: (written[n], n))
    client.delete(*keys)


def test_a_slice_ending_at_or_after_redis_now_goes_on_to_the_rest(
    client: redis.Redis, keys: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``CostExchange`` against the script: reports written at or after Redis's clock of
    the call (the same millisecond, or a clock gone back by a failover) in more than
    one slice. A slice is told by the node it ended on: before, its ``since`` not being
    below ``now`` read as "no slice", and each round sent the first slice again, never
    the rest (and a hypothesis example lost the last report of a millisecond)."""
    monkeypatch.setattr(totals, "COSTS_SLICE", 2)
    now = _now(client)
    written = {f"n{i}": now + 60_000 + i // 2 for i in range(7)}  # two a ms, a minute on
    _plant(client, keys, written)
    run = client.register_script(COSTS)
    exchange = totals.CostExchange(keys[0], "me")
    source = totals.loads(REPORT)
    for at in range(8):  # bounded: 7 reports at 2 a round take 4
        exchange.due()
        call = exchange.call(float(at), lambda: source)
        assert call is not None
        assert exchange.read(run(keys=call[1], args=call[2]))
    assert set(exchange.by_node) == set(written)


def test_a_clock_gone_back_reads_all_again(client: redis.Redis, keys: list[str]) -> None:
    """Redis's clock behind its last reading (a failover to a replica whose clock lags
    an hour): the next read starts over and sends every live report. (Unchanged: it
    guards the new test of a clock gone back, against Redis's last reading.)"""
    now = _now(client)
    _plant(client, keys, {"a": now - 5000, "b": now - 4000})
    run = client.register_script(COSTS)
    exchange = totals.CostExchange(keys[0], "me")
    source = totals.loads(REPORT)
    ahead = now + 3_600_000
    assert exchange.read([ahead, 0, ahead, b"", 0])  # a reply from the old primary
    exchange.due()
    call = exchange.call(1.0, lambda: source)
    assert call is not None
    assert call[2][3] == ahead - totals.SINCE_SLACK  # (a steady read: from a second before)
    assert exchange.read(run(keys=call[1], args=call[2]))
    assert exchange.by_node == {}  # read from the hour ahead: nothing
    exchange.due()
    call = exchange.call(2.0, lambda: source)
    assert call is not None
    assert call[2][3] == 0  # the clock went back: from the start
    assert exchange.read(run(keys=call[1], args=call[2]))
    assert set(exchange.by_node) == {"a", "b"}


def test_the_index_lost_is_rebuilt_from_the_hash(client: redis.Redis, keys: list[str]) -> None:
    """The index deleted (an eviction, a partial flush): rebuilt once from the hash with the
    reports' own write times, so a member that had read them is not sent them again."""
    now = _now(client)
    _plant(client, keys, {f"n{i}": now - 5000 - i for i in range(30)})
    caller = Caller(client, keys)
    assert len(caller.call()["sent"]) == 30
    client.delete(keys[1])
    got = caller.call()
    assert got["sent"] == []
    assert len(got["names"]) == 30
    hashed, indexed = _held(client, keys)
    assert hashed == indexed
    assert client.pexpiretime(keys[0]) == client.pexpiretime(keys[1]) > now
    assert Caller(client, keys, "new").call()["sent"] == [f"n{i}" for i in reversed(range(30))]


def test_the_hash_lost_empties_the_index(client: redis.Redis, keys: list[str]) -> None:
    """The hash deleted: the index's entries have no report left; they are dropped, and a
    caller whose report was in it is told to send it again."""
    now = _now(client)
    _plant(client, keys, {"me": now - 100, "other": now - 200})
    client.delete(keys[0])
    got = Caller(client, keys).call()
    assert got == {"missing": 1, "names": [], "sent": [], "sliced": False}
    assert client.exists(keys[1]) == 0


def test_entries_seawall_did_not_write_are_dropped(client: redis.Redis, keys: list[str]) -> None:
    """An index entry whose report is gone, a report that is not ``expiry|JSON``, and an
    index of another type: dropped where met, the script still answers, and the other
    reports are sent."""
    now = _now(client)
    _plant(client, keys, {"good": now - 300, "junk": now - 200})
    client.hset(keys[0], "junk", "no bar here")  # (the expiry times still agree)
    client.hset(keys[0], "unindexed", f"{now + TTL}|{REPORT}")  # counts agree again:
    client.zadd(keys[1], {"ghost": now - 100})  # the ghost met in the fast path
    caller = Caller(client, keys)
    assert caller.call()["sent"] == ["good"]
    assert "ghost" not in _held(client, keys)[1]
    assert "junk" not in _held(client, keys)[0] | _held(client, keys)[1]
    caller.call()  # the counts disagreed: rebuilt, the unindexed report indexed
    assert _held(client, keys) == ({"good", "unindexed"}, {"good", "unindexed"})
    client.delete(keys[1])
    client.set(keys[1], "not a sorted set")
    assert sorted(Caller(client, keys, "new").call()["sent"]) == ["good", "unindexed"]


def test_an_older_versions_writes_are_read(client: redis.Redis, keys: list[str]) -> None:
    """A rolling deploy: a member of the version before the index writes its report in
    the hash alone and sets the hash's TTL (``PEXPIRE``), every second. Its expiry time
    then differs from the index's, so the index is rebuilt, and its changes are read."""
    caller = Caller(client, keys)
    caller.call(mine=REPORT)
    for calls in (1, 2):
        client.hset(keys[0], "old", f"{_now(client) + TTL}|{REPORT.replace('1000', str(calls))}")
        client.pexpire(keys[0], TTL)  # (the old script, as it publishes)
        assert caller.call()["sent"] == ["old"]
        assert client.pexpiretime(keys[0]) == client.pexpiretime(keys[1])  # (agree again)
    hashed, indexed = _held(client, keys)
    assert hashed == indexed == {"me", "old"}


def test_a_steady_call_reads_no_report_nor_names(client: redis.Redis, keys: list[str]) -> None:
    """Among 1,000 reports that did not change, a call reads none (it read them all, every
    second on every member) and, unless asked, lists no names: its reply is 5 values."""
    now = _now(client)
    _plant(client, keys, {f"n{i:04d}": now - 60_000 + i for i in range(1000)})
    caller = Caller(client, keys)
    for _ in range(11):  # bounded: the first reads, in slices
        if not caller.call()["sliced"]:
            break
    client.config_resetstat()
    reply = caller.run(keys=keys, args=["me", "", TTL, caller.since, COSTS_SLICE, "", 500, "0"])
    assert len(reply) == 5
    stats = client.info("commandstats")
    assert "cmdstat_hgetall" not in stats
    assert "cmdstat_hmget" not in stats


async def test_a_steady_exchange_reads_no_report(
    server: RedisServer, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Members whose reports did not change read none: no ``HGETALL`` of the hash (each
    second, on each member, it read every report's bytes), ``HMGET`` of the changed only."""
    monkeypatch.setattr(totals, "SINCE_SLACK", 0)  # (no report of the last second again)
    prefix = f"s{uuid.uuid4().hex[:8]}"
    now = _now(client)
    client.hset(
        f"{prefix}:{{costs}}", mapping={f"dead-{i}": f"{now + TTL}|{REPORT}" for i in range(300)}
    )
    # No seawall key: the rounds run no other script (READ walks a key's votes: HGETALL).
    fleet = Fleet(server.url, prefix=prefix, refresh=5.0, timeout=1.0)
    made = [Seawall(entrypoints=False, state=fleet) for _ in range(2)]
    stores = [m.store for m in made]
    assert all(isinstance(s, FleetStore) for s in stores)

    async def rounds(n: int) -> None:
        for _ in range(n):
            for s in stores:
                s.costs_due()  # type: ignore[attr-defined]
                await s.sync()  # type: ignore[attr-defined]

    try:
        await rounds(6)  # bounded: 300 reports in slices of 100, then steady
        client.config_resetstat()
        await rounds(3)
        stats = client.info("commandstats")
        assert "cmdstat_hgetall" not in stats
        assert "cmdstat_hmget" not in stats
        assert stats["cmdstat_evalsha"]["calls"] >= 6
        usage = Usage("gpt-4o", "openai", "chat", 7, 1)
        made[0].cost_tracker.record("https://api.openai.com", usage)
        await rounds(2)
        stats = client.info("commandstats")
        assert "cmdstat_hgetall" not in stats
        assert stats["cmdstat_hmget"]["calls"] >= 1
        assert made[1].costs(scope="fleet").input_tokens == 300 * 1000 + 7
    finally:
        for m in made:
            await m.aclose()


def test_the_live_names_are_listed_once_a_minute_and_prune_only_then() -> None:
    """Listing 3,000 live names took 30 times the rest of a steady call's Redis time: an
    exchange asks for them every ``NAMES_EVERY`` s (the first one, and the next after Redis
    lost this process's report), and only a reply that lists them forgets reports."""
    exchange = totals.CostExchange("p:{costs}", "me")
    source = totals.loads(REPORT)
    exchange.by_node["gone"] = source
    asked = []
    for at, reply_names, missing in [
        (0.0, [b"a"], 0),  # the first: listed, "gone" forgotten
        (5.0, [], 0),  # not listed: nothing forgotten
        (6.0, [], 1),  # not listed, and Redis lost this report...
        (7.0, [], 0),  # ... so listed again: "a" forgotten
        (8.0, [], 0),
        (7.0 + totals.NAMES_EVERY, [], 0),  # a minute on: listed
    ]:
        call = exchange.call(at, lambda: source)
        assert call is not None
        asked.append(call[2][-1])
        body = [b"a", REPORT.encode()] if at == 0.0 else []
        exchange.read([10_000, missing, 10_000, b"", len(reply_names), *reply_names, *body])
        exchange.due()
        if at == 5.0:
            assert set(exchange.by_node) == {"a"}
    assert asked == ["1", "0", "0", "1", "0", "1"]
    assert exchange.by_node == {}
