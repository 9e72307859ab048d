"""The fleet's background task ends when it is cancelled, even when a Redis call drops the cancel.

redis-py bounds each socket write with ``asyncio.wait_for``. On Python 3.11 a
write that ends as its caller is cancelled returns normally and the
cancellation is lost (bpo-42130). ``asyncio.run`` cancels each task left at the
end of ``main()`` once and waits for them, so a fleet task that lost its cancel
ran on, a round every ``refresh``, and the program never exited (the lift
benchmark's fleet members hung there in CI, about one run in four on a loaded
machine). The test drops the cancel on purpose, the way that race does, with a
real client talking to a real ``redis-server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import redis.asyncio as aioredis

from seawall import Seawall
from seawall.fleet import Fleet, FleetStore
from seawall.policy import BreakerPolicy, Policy
from tests._redis import RedisServer, server_fixture

server = server_fixture()

POLICY = Policy(breaker=BreakerPolicy(failure_threshold=2, recovery_timeout=0.3))

#: Seconds the task gets to end once cancelled (it ends at once; this bounds the old hang).
END_LIMIT = 5.0


class _Dropping(aioredis.Connection):
    """A connection whose next write, once armed, waits until cancelled and then goes out
    anyway, returning as if nothing happened: what ``wait_for`` does on 3.11 when the
    write finishes as the cancel comes."""

    armed = asyncio.Event()
    entered = asyncio.Event()

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self.armed.is_set():
            self.armed.clear()
            self.entered.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()  # only the cancel ends it
        await super().send_packed_command(command, check_health)


async def test_the_fleet_task_ends_when_a_redis_call_drops_its_cancel(server: RedisServer) -> None:
    class Dropping(_Dropping):
        armed = asyncio.Event()
        entered = asyncio.Event()

    client = aioredis.Redis.from_url(server.url, connection_class=Dropping)
    prefix = f"c{uuid.uuid4().hex[:8]}"
    sw = Seawall(POLICY, entrypoints=False, state=Fleet(client, prefix=prefix, timeout=1.0))
    try:
        store = sw.store
        assert isinstance(store, FleetStore)
        sw.state_for("host", POLICY)  # the fleet's task is needed: it starts on this loop
        task = store._task
        assert task is not None
        Dropping.armed.set()
        async with asyncio.timeout(END_LIMIT):  # the task's next round writes to Redis
            await Dropping.entered.wait()
        task.cancel()  # once, as asyncio.run does with the tasks left at its end
        await asyncio.wait({task}, timeout=END_LIMIT)
        assert task.done(), "the fleet's task ran on after its cancel was dropped"
        assert task.cancelled()
        assert await client.ping()  # the client the user gave is left open and usable
    finally:
        await sw.aclose()
        await client.aclose()
