"""The connection to Redis: the only module that imports ``redis`` (lazily, ``seawall[redis]``).

Tight timeouts and no client retries: a round trip that does not come back
in ``timeout`` seconds is a failure, and the store falls back to in-process
state. Nothing here runs on a caller's request path: the store's background
task is the only caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from seawall.fleet import scripts
from seawall.redact import redact_url

__all__ = ["Link", "LinkError", "describe"]

#: Extra seconds on top of the socket timeout before a round trip is abandoned
#: (a client object passed in may have looser timeouts of its own).
_BACKSTOP = 0.1


class LinkError(Exception):
    """A round trip to Redis failed or took too long."""


def describe(target: object) -> str:
    """What to call the Redis in logs and reports: never with its password."""
    if isinstance(target, str):
        return str(redact_url(target))
    return f"<{type(target).__module__}.{type(target).__qualname__}>"


def _import_redis() -> Any:
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:  # pragma: no cover - the test extras install it
        msg = (
            "Seawall(state='redis://...') needs redis-py: pip install 'seawall[redis]' "
            "(or pass state=None for in-process state)"
        )
        raise ImportError(msg) from exc
    return aioredis


def check_target(target: object) -> None:
    """Refuse a ``state=`` that is neither a ``redis://`` URL nor a redis-py asyncio client."""
    if isinstance(target, str):
        if not target.startswith(("redis://", "rediss://", "unix://", "valkey://")):
            shown = describe(target)
            msg = (
                f"Seawall(state={shown!r}): give a Redis URL such as "
                "'redis://127.0.0.1:6379/0' (or rediss://, unix://), or a redis.asyncio.Redis"
            )
            raise ValueError(msg)
        _import_redis()
        return
    aioredis = _import_redis()
    if not isinstance(target, aioredis.Redis):
        msg = (
            f"Seawall(state=...) takes a Redis URL or a redis.asyncio.Redis client, "
            f"not {type(target).__name__}"
        )
        raise TypeError(msg)


class Link:
    """One Redis client with the fleet's scripts, made on first use inside the event loop."""

    def __init__(self, target: object, *, timeout: float) -> None:
        check_target(target)
        self.target = target
        self.timeout = timeout
        self._client: Any = None
        self._owned = isinstance(target, str)
        self._scripts: dict[str, Any] = {}

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        aioredis = _import_redis()
        if isinstance(self.target, str):
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            url = self.target.replace("valkey://", "redis://", 1)
            client = aioredis.Redis.from_url(
                url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
                health_check_interval=0,
            )
        else:
            client = self.target
        self._client = client
        for name in scripts.__all__:
            self._scripts[name] = client.register_script(getattr(scripts, name))
        return client

    async def run(self, batch: Sequence[tuple[str, Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Run ``(script, keys, args)`` calls in one pipelined round trip; their replies in order.

        An empty batch is a ``PING``: every round asks Redis something, so a
        Redis that stalls is noticed within one round whatever the traffic (a
        round with nothing to read used to skip Redis, and a stall then took
        two rounds and a time limit, 0.25 s, to notice).

        :raises LinkError: on any Redis error or when the reply is late.
        """
        try:
            client = self._connect()
            async with asyncio.timeout(self.timeout + _BACKSTOP):
                if not batch:
                    await client.ping()
                    return []
                async with client.pipeline(transaction=False) as pipe:
                    for name, keys, args in batch:
                        await self._scripts[name](keys=keys, args=args, client=pipe)
                    return list(await pipe.execute())
        except (Exception, TimeoutError) as exc:
            raise LinkError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._owned:
            await client.aclose()
