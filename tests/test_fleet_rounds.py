"""A fleet round picks the keys it reads without looking at every key's state.

At the registry's cap (10,000 keys), a round used to walk every state to sort
keys into urgent, busy and idle: about 7 ms of the event loop every 100 ms
with nearly every key idle. Now the store is told (its parts' news marks
urgent keys, a key's counters note its first call since its last read), and
a round looks at the marked and noted keys and a slice of the idle ones. The
states a round looks at are counted through the store's mapping; what it reads
is taken from the pipeline it sends (a real ``redis-server``). No sleeps: each
round is run by the test (``store.sync()``), or by the store's task woken by
news, and every round sent is recorded.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from seawall import Seawall
from seawall.fleet import Fleet, FleetStore
from seawall.fleet.schedule import IDLE_SLICE, READ_LIMIT, FleetStats, ReadSchedule
from seawall.policy import BreakerPolicy, Policy
from seawall.state import KeyState
from tests._redis import RedisServer, server_fixture

server = server_fixture()

#: Keys in the store: the registry's cap.
KEYS = 10_000

#: Most states a round may look at: its reads (``READ_LIMIT``) twice over (picked, then
#: built into calls), its idle slice's look-ahead, and the news of a round. A walk of
#: every key looks at ``KEYS``.
LOOK_LIMIT = 3 * READ_LIMIT

POLICY = Policy(breaker=BreakerPolicy(failure_threshold=1))


class CountedStates(dict[str, KeyState]):
    """The store's states, counting each state looked at (by key or by a walk)."""

    looked = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.looked += 1
        return super().get(key, default)

    def __getitem__(self, key: str) -> KeyState:
        self.looked += 1
        return super().__getitem__(key)

    def items(self) -> Any:
        self.looked += len(self)
        return super().items()

    def keys(self) -> Any:
        self.looked += len(self)
        return super().keys()

    def values(self) -> Any:
        self.looked += len(self)
        return super().values()

    def __iter__(self) -> Iterator[str]:
        self.looked += len(self)
        return super().__iter__()


class Rounds:
    """Every round the store sends: the keys it read, and the states it looked at."""

    def __init__(self, store: FleetStore, states: CountedStates) -> None:
        self.reads: list[list[str]] = []
        self.looked: list[int] = []
        states.looked = 0
        run = store.link.run
        prefix = f"{store.prefix}:{{"

        async def recorded(batch: Any) -> list[Any]:
            self.looked.append(states.looked)
            states.looked = 0
            keys = [call[1][0] for call in batch if call[0] == "READ"]
            self.reads.append([k[len(prefix) : k.index("}:")] for k in keys])
            return await run(batch)

        store.link.run = recorded  # type: ignore[method-assign]

    async def next(self, store: FleetStore) -> list[str]:
        """The keys read by the next round sent (the task's, woken by news, or this one)."""
        sent = len(self.reads)
        assert await store.sync()
        return self.reads[sent]


@pytest.fixture
async def fleet(server: RedisServer) -> Any:
    sw = Seawall(
        POLICY,
        entrypoints=False,
        state=Fleet(server.url, prefix=f"r{uuid.uuid4().hex[:8]}", refresh=5.0, timeout=1.0),
    )
    store = sw.store
    assert isinstance(store, FleetStore)
    states = store.states = CountedStates()
    for number in range(KEYS):
        sw.state_for(f"host-{number}", POLICY)
    assert await store.sync()  # linked (linking walks every key once: its resync)
    rounds = Rounds(store, states)
    for _ in range(KEYS // (READ_LIMIT - 8) + 10):  # bounded: every new key read once
        if len(await rounds.next(store)) <= IDLE_SLICE:
            break
    else:
        raise AssertionError("the new keys were not all read in turn")
    try:
        yield sw, store, rounds
    finally:
        await sw.aclose()


async def one() -> int:
    return 1


async def test_a_round_looks_at_a_bounded_number_of_states_and_reads_what_changed_next(
    fleet: Any,
) -> None:
    """10,000 idle keys: a round looks at a few hundred states at most, not 10,000; a
    key called (on the loop or from a thread), a key whose 429 wait began and a key
    whose breaker opened are read by the very next round, the urgent ones every round."""
    sw, store, rounds = fleet
    assert max(rounds.looked) <= LOOK_LIMIT, max(rounds.looked)  # the first reads too
    await sw.call(one, key="host-10")  # busy: a call since its last read
    await asyncio.to_thread(sw.call_sync, lambda: 1, key="host-20")  # from a thread
    sw.state_for("host-30", POLICY).cooldown.start(30.0)  # urgent: a 429's wait
    sw.state_for("host-40", POLICY).breaker.call_failed()  # urgent: the breaker opens
    read = await rounds.next(store)
    assert {"host-10", "host-20", "host-30", "host-40"} <= set(read), read
    assert len(read) <= READ_LIMIT
    for _ in range(3):  # urgent: read every round while urgent; busy: not again unless called
        read = await rounds.next(store)
        assert {"host-30", "host-40"} <= set(read), read
        assert "host-10" not in read  # (read last of 10,000: the idle slice is far from it)
    await sw.call(one, key="host-10")
    assert "host-10" in await rounds.next(store)
    assert max(rounds.looked) <= LOOK_LIMIT, max(rounds.looked)


async def test_every_idle_key_is_read_within_the_slice_bound(fleet: Any) -> None:
    """Nothing starves: with 10,000 idle keys, each is read within about
    10,000 / ``IDLE_SLICE`` rounds, and no round reads more than ``IDLE_SLICE`` of them."""
    _sw, store, rounds = fleet
    bound = math.ceil(KEYS / IDLE_SLICE) + 1
    unread = {f"host-{number}" for number in range(KEYS)}
    start = len(rounds.reads)
    for _ in range(bound):  # (the store's task may run one of them: every round counts)
        await rounds.next(store)
        if len(rounds.reads) - start >= bound:
            break
    for read in rounds.reads[start : start + bound]:
        assert len(read) <= IDLE_SLICE
        unread.difference_update(read)
    assert not unread, f"{len(unread)} keys not read in {bound} rounds, e.g. {sorted(unread)[:3]}"
    assert max(rounds.looked) <= LOOK_LIMIT, max(rounds.looked)


def test_busy_keys_past_the_read_limit_are_read_in_turn_and_urgent_ones_first() -> None:
    """The schedule alone: 300 keys called every round and 5 urgent among 10,000 idle;
    the urgent keys are read every round, each busy key at least every third round, and
    every key read keeps being noted (its next call noted again after its read)."""
    schedule = ReadSchedule()
    states: dict[str, KeyState] = {}
    for number in range(KEYS):
        state = KeyState(f"k{number}", POLICY, lambda: 0.0)
        schedule.track(state)
        states[state.key] = state
    for _ in range(KEYS // READ_LIMIT + 2):  # every new key read once
        schedule.due(states, 0.0, 10)
    urgent = [f"k{n}" for n in range(5)]
    for key in urgent:
        states[key].cooldown.until = 100.0
        schedule.mark_urgent(key)
    busy = [f"k{n}" for n in range(5, 305)]
    last_read = dict.fromkeys(busy, 0)
    for number in range(1, 31):
        for key in busy:
            states[key].begin(0.0)
            assert isinstance(states[key].stats, FleetStats)
        due = schedule.due(states, 1.0, 10)
        assert len(due) <= READ_LIMIT
        assert due[:5] == urgent  # urgent first
        for key in due:
            if key in last_read:
                last_read[key] = number
        assert all(number - at < 3 for at in last_read.values()), number
