"""The fleet layer's audit: defects found in it, each with a test against a real redis-server.

Many keys (the store forgets what the registry forgets; a round reads a
bounded number), a close generation Redis forgot, values seawall did not
write, the reconnect check, the fleet task's event loop (sync-only use, a
loop that ended), secrets in every part of the URL, and ``[state] url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from seawall import Seawall
from seawall._path import registry as registry_module
from seawall.breaker import BreakerState
from seawall.cli import main as cli_main
from seawall.errors import CircuitOpenError
from seawall.fleet import Fleet, FleetStore
from seawall.fleet import store as fleet_store
from seawall.fleet.schedule import IDLE_EVERY
from seawall.policy import BreakerPolicy, Policy
from tests._helpers import Clock
from tests._redis import RedisServer, redis_server, server_fixture
from tests.test_fleet import LEASE_POLICY, Member, granted_one, relink, step

#: Bounded polls: seconds a condition gets to come true (a loaded 2-core machine).
LIMIT = 10.0
#: A round's calls past its reads (the outbox, the costs, leases, repairs): a bound.
ROUND_EXTRA = 40


server = server_fixture()


@pytest.fixture
def prefix() -> str:
    return f"a{uuid.uuid4().hex[:8]}"


async def until(condition: Any, what: str, limit: float = LIMIT) -> None:
    """Poll ``condition()`` until true (bounded in time and count), else fail saying ``what``."""
    deadline = time.monotonic() + limit
    for _ in range(int(limit / 0.02) + 1):
        if condition():
            return
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {limit} s: {what}")


def record_batches(store: FleetStore) -> list[int]:
    """Wrap the store's link: the size of every round's pipeline, in order."""
    sizes: list[int] = []
    run = store.link.run

    async def counted(batch: Any) -> list[Any]:
        sizes.append(len(batch))
        return await run(batch)

    store.link.run = counted  # type: ignore[method-assign]
    return sizes


# --- 1. many keys ---------------------------------------------------------------------


async def test_the_store_forgets_the_keys_the_registry_forgets(
    server: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_module, "MAX_KEYS", 64)
    policy = Policy()
    sw = Seawall(policy, entrypoints=False, state=Fleet(server.url, prefix=prefix, timeout=1.0))
    try:
        store = sw.store
        assert isinstance(store, FleetStore)
        for i in range(400):
            sw.state_for(f"host-{i}", policy)
        kept = set(sw.registry.view)
        assert len(kept) <= 64
        assert set(store.states) == kept  # forgotten by both, kept by both
        assert "host-0" not in store.states
        assert await store.sync()
        # A forgotten key used again is a fresh state, read and shared like any other.
        again = sw.state_for("host-0", policy)
        assert store.states["host-0"] is again
    finally:
        await sw.aclose()


async def test_a_round_reads_a_bounded_number_of_keys_and_every_key_in_turn(
    server: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3,000 keys, every one due each round (``IDLE_EVERY`` = 1): a round's pipeline
    stays small, the store stays linked, and a 429's wait on any key still reaches it."""
    monkeypatch.setattr(fleet_store, "IDLE_EVERY", 1)
    policy = Policy()
    fleet = Fleet(server.url, prefix=prefix, refresh=5.0, timeout=1.0)
    a = Seawall(policy, entrypoints=False, state=fleet)
    b = Seawall(policy, entrypoints=False, state=fleet)
    try:
        assert isinstance(a.store, FleetStore)
        assert isinstance(b.store, FleetStore)
        keys = [f"host-{i}" for i in range(3000)]
        for key in keys:
            b.state_for(key, policy)
        last = keys[-1]
        a.state_for(last, policy).cooldown.start(30.0)  # a 429 on b's last key
        assert await a.store.sync()
        sizes = record_batches(b.store)
        target = b.state_for(last, policy)
        for _ in range(200):  # bounded: 3,000 keys in slices
            assert await b.store.sync(), "a data-sized round must not fall back"
            if target.cooldown.remaining() > 20:
                break
        assert target.cooldown.remaining() > 20, "the idle key was never read"
        assert max(sizes) <= 128 + ROUND_EXTRA, max(sizes)
        assert b.health().state == "shared"
    finally:
        await a.aclose()
        await b.aclose()


# --- 2. a close generation Redis forgot ---------------------------------------------------


async def _outage_and_close(members: list[Member], clock: Clock) -> None:
    prober = await granted_one(members, clock)
    permit = prober.breaker.admit()
    assert permit is not None
    assert permit.probe
    prober.breaker.record(permit, failure=False)
    assert prober.breaker.state is BreakerState.CLOSED
    await step(members)
    states = [m.breaker.state for m in members]
    assert all(s is BreakerState.CLOSED for s in states), states


@pytest.mark.parametrize("reset", ["FLUSHALL", "restart"])
async def test_a_close_spreads_after_redis_forgot_the_generation(prefix: str, reset: str) -> None:
    srv = redis_server()
    clock = Clock()
    members = [Member(srv.url, prefix, LEASE_POLICY, clock) for _ in range(3)]
    try:
        for m in members:
            assert await m.store.sync()
        await _outage_and_close(members, clock)  # every member saw the first close's gen
        if reset == "FLUSHALL":  # (as the hash's TTL does after a close, for every key)
            client = aioredis.Redis.from_url(srv.url)
            await client.flushall()
            await client.aclose()
        else:
            srv.kill()
            for m in members:
                assert not await m.store.sync()
            srv.start()
            await relink(members)
        await _outage_and_close(members, clock)  # the second close reaches every member
    finally:
        for m in members:
            await m.sw.aclose()
        srv.kill()


async def test_a_generation_from_a_skewed_or_hostile_writer_does_not_block_closes(
    server: RedisServer, prefix: str
) -> None:
    """A member saw a huge ``gen`` (another server's clock, a hostile write); Redis then
    forgot it: the lower generation is recognised, and the next close still spreads."""
    clock = Clock()
    members = [Member(server.url, prefix, LEASE_POLICY, clock) for _ in range(3)]
    client = aioredis.Redis.from_url(server.url)
    try:
        await client.hset(f"{prefix}:{{k}}:b", mapping={"gen": 10**15, "due": 0})
        await client.pexpire(f"{prefix}:{{k}}:b", 60_000)  # (no TTL: not seawall's, deleted)
        await step(members)
        assert all(m.breaker.gen == 10**15 for m in members)
        await client.delete(f"{prefix}:{{k}}:b")
        await _outage_and_close(members, clock)
    finally:
        await client.aclose()
        for m in members:
            await m.sw.aclose()


# --- 3. values seawall did not write -----------------------------------------------------


@pytest.mark.parametrize(
    "poison",
    ["text in c", "a string for the v hash", "text in a vote", "a cost report without a bar"],
)
async def test_a_bad_value_spoils_one_key_not_the_fleet(
    server: RedisServer, prefix: str, poison: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = aioredis.Redis.from_url(server.url)
    if poison == "text in c":
        await client.set(f"{prefix}:{{bad}}:c", "not-a-number")
    elif poison == "a string for the v hash":
        await client.set(f"{prefix}:{{bad}}:v", "x")
    elif poison == "text in a vote":
        await client.hset(f"{prefix}:{{bad}}:v", mapping={"other-node": "soon", "n2": 2**62})
    else:
        await client.hset(f"{prefix}:{{costs}}", "someone", "no bar here")
    policy = Policy()
    members = [
        Seawall(
            policy, entrypoints=False, state=Fleet(server.url, prefix=prefix, refresh=5, timeout=1)
        )
        for _ in range(2)
    ]
    caplog.set_level(logging.INFO, logger="seawall")
    try:
        stores = [m.store for m in members]
        assert all(isinstance(s, FleetStore) for s in stores)
        for m in members:
            m.state_for("good", policy)
            m.state_for("bad", policy)
        a, b = members
        a.state_for("good", policy).cooldown.start(20.0)  # a 429 on the good key
        for s in stores:
            s.costs_due()  # type: ignore[attr-defined]
        # Bounded: every round stays linked (a data error is no outage). b calls neither
        # key: both are idle there, each read once per IDLE_EVERY rounds, in an order
        # that its first reads set (a set's order: it varies from run to run).
        for _ in range(IDLE_EVERY + 2):
            for s in stores:
                assert await s.sync()  # type: ignore[attr-defined]
                s.costs_due()  # type: ignore[attr-defined]
        assert b.state_for("good", policy).cooldown.remaining() > 15  # the others still shared
        assert all(m.health().state == "shared" for m in members)
        # Repaired: what seawall did not write is gone, the fleet's own entries stay.
        if poison == "text in c":
            assert await client.get(f"{prefix}:{{bad}}:c") is None
        elif poison == "a string for the v hash":
            assert await client.type(f"{prefix}:{{bad}}:v") in (b"hash", b"none")
        elif poison == "text in a vote":
            assert await client.hget(f"{prefix}:{{bad}}:v", "other-node") is None
        else:
            assert await client.hget(f"{prefix}:{{costs}}", "someone") is None
        # Logged once per store at most, never as Redis out of reach.
        texts = [r.getMessage() for r in caplog.records if r.name.startswith("seawall")]
        assert not [t for t in texts if "out of reach" in t], texts
        assert len([t for t in texts if "not one seawall wrote" in t]) <= 2, texts
    finally:
        await client.aclose()
        for m in members:
            await m.aclose()


# --- 4. the reconnect check, and flapping logged sparingly -----------------------------------


async def test_relinking_pings_and_flapping_logs_a_line_a_minute(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    srv = redis_server()
    sw = Seawall(entrypoints=False, state=Fleet(srv.url, prefix=prefix, refresh=5.0, timeout=0.2))
    caplog.set_level(logging.INFO, logger="seawall")
    try:
        store = sw.store
        assert isinstance(store, FleetStore)
        sw.state_for("k", Policy())
        assert await store.sync()
        sent: list[Any] = []
        run = store.link.run

        async def spy(batch: Any) -> list[Any]:
            sent.append(list(batch))
            return await run(batch)

        store.link.run = spy  # type: ignore[method-assign]
        for _ in range(3):  # three flaps: out of reach, then back
            srv.pause()
            try:
                assert not await store.sync()
            finally:
                srv.resume()
            sent.clear()
            for _ in range(int(LIMIT / 0.05)):  # bounded: the guard lets a retry through
                if await store.sync():
                    break
                await asyncio.sleep(0.05)
            assert store.linked
            assert sent[0] == [], "the first call after falling back is a PING"
        texts = [r.getMessage() for r in caplog.records]
        assert len([t for t in texts if "out of reach" in t]) == 1, texts
        assert len([t for t in texts if "reached" in t]) <= 1, texts
        client = aioredis.Redis.from_url(srv.url)
        assert await client.keys(f"{prefix}:{{-}}*") == []
        await client.aclose()
    finally:
        await sw.aclose()
        srv.kill()


# --- 5. the fleet task's event loop ---------------------------------------------------------


def _votes(url: str, prefix: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return len(client.hgetall(f"{prefix}:{{k}}:v"))
    finally:
        client.close()


def _poll(condition: Any, what: str) -> None:
    deadline = time.monotonic() + LIMIT
    for _ in range(int(LIMIT / 0.02) + 1):
        if condition():
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)  # polling a condition, bounded
    raise AssertionError(f"not within {LIMIT} s: {what}")


def _boom() -> None:
    raise ConnectionError("upstream down")


POLICY5 = Policy(breaker=BreakerPolicy(failure_threshold=2, recovery_timeout=5))


def test_a_sync_only_app_shares_state_through_the_fleets_thread(
    server: RedisServer, prefix: str
) -> None:
    before = set(threading.enumerate())
    members = [Seawall(POLICY5, entrypoints=False, state=Fleet(server.url, prefix=prefix))]
    members.append(Seawall(POLICY5, entrypoints=False, state=Fleet(server.url, prefix=prefix)))
    try:
        for sw in members:
            for _ in range(3):
                with pytest.raises((ConnectionError, CircuitOpenError)):
                    sw.call_sync(_boom, key="k")
        _poll(lambda: _votes(server.url, prefix) == 2, "both processes' votes in Redis")
        _poll(lambda: all(sw.health().state == "shared" for sw in members), "shared")
    finally:
        for sw in members:
            asyncio.run(sw.aclose())
    _poll(
        lambda: not [t for t in set(threading.enumerate()) - before if t.name == "seawall.fleet"],
        "the fleet's threads end on aclose",
    )


def test_a_seawall_reused_across_event_loops_never_reports_a_dead_task_as_shared(
    server: RedisServer, prefix: str
) -> None:
    sw = Seawall(POLICY5, entrypoints=False, state=Fleet(server.url, prefix=prefix))

    async def ok() -> int:
        return 1

    async def boom() -> None:
        raise ConnectionError("down")

    async def job(fn: Any) -> str:
        for _ in range(3):
            with contextlib.suppress(ConnectionError, CircuitOpenError):
                await sw.call(fn, key="k")
        await until(lambda: sw.health().state == "shared", "linked in this loop")
        return str(sw.health().state)

    try:
        assert asyncio.run(job(ok)) == "shared"
        store = sw.store
        assert isinstance(store, FleetStore)
        assert store._task is not None
        assert store._task.get_loop().is_closed()
        assert not store.running  # the loop ended with the task: not "shared" ...
        state = sw.health().state  # ... until a task runs again (here: the fleet's thread)
        assert state == "local-fallback" or store.running
        assert asyncio.run(job(boom)) == "shared"  # a second loop: the votes reach Redis
        _poll(lambda: _votes(server.url, prefix) == 1, "the second loop's vote in Redis")
    finally:
        asyncio.run(sw.aclose())


# --- 6. secrets in the URL ------------------------------------------------------------------

SECRET = "S3cr3tPW"
PIECES = (SECRET, SECRET[:4], SECRET[4:], "uS3c")


def _urls(port: int) -> list[str]:
    host = f"127.0.0.1:{port}"
    return [
        f"redis://:{SECRET}@{host}/0",
        f"redis://uS3c:{SECRET}@{host}/0",
        f"redis://{host}/0?password={SECRET}",
        f"redis://:{SECRET[:4]}%2F{SECRET[4:]}@{host}/0",
        f"redis://:{SECRET}@{host}/0?socket_timeout=abc",
        f"redis://:{SECRET}@{host}/99",
    ]


@pytest.mark.parametrize("index", range(6))
async def test_no_piece_of_a_secret_in_the_url_is_ever_logged(
    index: int, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    srv = RedisServer()
    srv.start()  # (a server wanting another password: redis-py's errors quote what they got)
    redis.Redis(port=srv.port).config_set("requirepass", "other")
    url = _urls(srv.port)[index]
    caplog.set_level(logging.DEBUG)
    sw = Seawall(entrypoints=False, state=Fleet(url, prefix=prefix, refresh=5.0, timeout=0.5))
    try:
        sw.state_for("k", Policy())
        store = sw.store
        assert isinstance(store, FleetStore)
        assert not await store.sync()
        shown = "\n".join(r.getMessage() for r in caplog.records)
        shown += repr(sw.health()) + store.where
        assert "out of reach" in shown
        for piece in PIECES:
            assert piece not in shown, (piece, shown)
    finally:
        await sw.aclose()
        srv.kill()


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET[:4]}/{SECRET[4:]}@127.0.0.1:6379/0",
        f"redis://:{SECRET[:4]}#{SECRET[4:]}@127.0.0.1:6379/0",
        f"redis://:{SECRET[:4]}?{SECRET[4:]}@127.0.0.1:6379/0",
        f"redis://:{SECRET}@127.0.0.1:notaport/0",
        f"redis://:{SECRET}@127.0.0.1:6379/zero",
        f"redis://:{SECRET}@:6379/0",
        f"http://:{SECRET}@127.0.0.1:6379/0",
    ],
    ids=range(7),
)
def test_an_unusable_state_url_is_refused_with_the_fix_and_no_secret(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "seawall.toml"
    path.write_text(f'[state]\nurl = "{url}"\n')
    assert cli_main(["check", str(path)]) != 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "state.url" in text
    assert any(fix in text for fix in ("percent-encode", "redis://host:6379/0", "e.g.", "such as"))
    with pytest.raises(ValueError) as caught:
        Seawall(entrypoints=False, state=url)
    for piece in PIECES:
        assert piece not in text, (piece, text)
        assert piece not in str(caught.value)


def test_a_usable_state_url_passes_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "seawall.toml"
    path.write_text('[state]\nurl = "redis://:q8%2FZx@127.0.0.1:6379/0"\n')
    assert cli_main(["check", str(path)]) == 0
    assert "q8" not in capsys.readouterr().out


SEPARATORS = ["", "/", "#", "?", "%2F", "@"]


def _secret_url(sep: str, where: str) -> tuple[str, str]:
    secret = f"{SECRET[:4]}{sep}{SECRET[4:]}"
    url = {
        "password": f"redis://:{secret}@127.0.0.1:6379/0",
        "user": f"redis://{secret}:{secret}@127.0.0.1:6379/0",
        "query": f"redis://127.0.0.1:6379/0?password={secret}",
    }[where]
    return secret, url


@pytest.mark.parametrize("sep", SEPARATORS)
@pytest.mark.parametrize("where", ["password", "user", "query"])
def test_what_the_fleet_calls_its_redis_shows_no_piece_of_a_secret(sep: str, where: str) -> None:
    """``describe``: the name of the Redis in every fleet log line and ``health()``."""
    from seawall.fleet.link import describe

    _, url = _secret_url(sep, where)
    shown = describe(url)
    for piece in (SECRET, SECRET[:4], SECRET[4:]):
        assert piece not in shown, (piece, shown)


@pytest.mark.parametrize("sep", SEPARATORS)
@pytest.mark.parametrize("where", ["password", "user", "query"])
def test_redis_errors_are_scrubbed_of_every_piece_of_the_secret(sep: str, where: str) -> None:
    """``scrub``: redis-py's error text, before the fleet logs or raises it. A password
    holding '/' confuses URL parsers, redis-py's too, which then quote the piece after it
    (``3tPW@127.0.0.1``) in their errors."""
    from seawall.fleet.link import scrub, secrets_of

    secret, url = _secret_url(sep, where)
    tail = secret.split(sep)[-1] if sep else secret  # what a parser misled by sep quotes
    error = f"Error connecting to {tail}@127.0.0.1:6379. {url} {secret}"
    shown = scrub(error, secrets_of(url))
    for piece in (SECRET, SECRET[:4], SECRET[4:]):
        assert piece not in shown, (piece, shown)


def test_a_dropped_sync_only_seawall_ends_the_fleets_thread(
    server: RedisServer, prefix: str
) -> None:
    """A sync-only program that makes a Seawall per job and drops it without aclose() must
    not keep a thread per Seawall exchanging with Redis for good."""
    before = set(threading.enumerate())

    def job() -> threading.Thread:
        sw = Seawall(POLICY5, entrypoints=False, state=Fleet(server.url, prefix=prefix))
        with pytest.raises(ConnectionError):
            sw.call_sync(_boom, key="k")
        _poll(lambda: sw.health().state == "shared", "shared")
        [thread] = [t for t in set(threading.enumerate()) - before if t.name == "seawall.fleet"]
        return thread

    thread = job()
    for _ in range(50):  # bounded: a collection, then the next round sees the store gone
        gc.collect()
        thread.join(0.2)
        if not thread.is_alive():
            break
    assert not thread.is_alive()


async def test_a_dropped_seawall_ends_its_fleet_task(server: RedisServer, prefix: str) -> None:
    """The same on an app's event loop: the fleet's task ends, its client closed."""

    async def ok() -> int:
        return 1

    async def job() -> asyncio.Task[None]:
        sw = Seawall(POLICY5, entrypoints=False, state=Fleet(server.url, prefix=prefix))
        assert await sw.call(ok, key="k") == 1
        task = sw.store._task  # type: ignore[attr-defined]
        assert task is not None
        assert not task.done()
        return task  # type: ignore[no-any-return]

    task = await job()
    for _ in range(50):  # bounded: a collection, then the next round sees the store gone
        gc.collect()
        await asyncio.wait([task], timeout=0.2)
        if task.done():
            break
    assert task.done()
    assert task.exception() is None
