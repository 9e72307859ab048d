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
from urllib.parse import unquote

from seawall.fleet import scripts
from seawall.fleet.repair import REPAIR, BadReply
from seawall.redact import MASK, redact_text, redact_url
from seawall.redis_url import redis_url_problem

__all__ = ["Link", "LinkError", "describe", "scrub"]

#: Extra seconds on top of the socket timeout before a round trip is abandoned
#: (a client object passed in may have looser timeouts of its own).
_BACKSTOP = 0.1


class LinkError(Exception):
    """A round trip to Redis failed or took too long (its text is redacted: ``scrub``)."""


def secrets_of(target: object) -> list[str]:
    """The parts of a Redis URL that must never be shown: its user-info and query
    credentials, whole and in pieces (a password holding ``/``, ``?`` or ``#`` confuses
    URL parsers, redis-py's too, which then quote a piece of it in an error), raw and
    percent-decoded.
    """
    if not isinstance(target, str):
        return []
    rest = target.partition("://")[2]
    found: list[str] = []
    if "@" in rest:
        found.append(rest[: rest.rindex("@")])
    for pair in rest.partition("?")[2].replace(";", "&").split("&"):
        name, _, value = pair.partition("=")
        if name.lower() in ("password", "username", "user", "pass", "auth"):
            found.append(value)
    pieces = set(found) | {unquote(v) for v in found}
    for sep in ":/?#@&":
        pieces.update(p for v in list(pieces) for p in v.split(sep))
    pieces |= {unquote(p) for p in pieces}
    # Longest first, so a whole secret is masked before a piece of it; tiny pieces ("",
    # one character) would mask half of every message, and say nothing of a password.
    return sorted((p for p in pieces if len(p) >= 2), key=len, reverse=True)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every piece of ``secrets`` masked, then seawall's own redaction."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return redact_text(text)


def describe(target: object) -> str:
    """What to call the Redis in logs and reports: never with its password (any of it)."""
    if isinstance(target, str):
        scheme, sep, rest = target.partition("://")
        if "@" in rest:  # the user-info ends at the last '@', whatever it holds
            rest = rest[rest.rindex("@") + 1 :]
        shown = str(redact_url(f"{scheme}{sep}{rest}"))
        return scrub(shown, secrets_of(target))
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
        why = redis_url_problem(target)
        if why is not None:  # (the URL is not quoted: it may hold a password)
            msg = f"Seawall(state=<a Redis URL>): the URL {why}; or pass a redis.asyncio.Redis"
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


def _about_data(reply: Exception, text: str) -> bool:
    """Whether a script's error is about a value it met (not about Redis's own state).

    Only a plain error reply is: redis-py gives Redis's refusals their own classes
    (``READONLY``: a replica after a failover; ``OOM``: a full Redis; ``NOPERM``,
    ``NOSCRIPT``), and their text names the script too (``@user_script``), so the
    text alone took a Redis that refuses every write for bad values under one key.
    """
    from redis.exceptions import ResponseError

    if type(reply) is not ResponseError:
        return False
    return "WRONGTYPE" in text or "user_script" in text or "attempt to " in text


def _honour_cancel(task: asyncio.Task[Any] | None, cancels: int) -> None:
    """Raise the cancellation of ``task`` that came during a Redis call and was lost there.

    redis-py bounds a socket write with ``asyncio.wait_for``, which on Python 3.11
    returns the result of a write that ends as the caller is cancelled, dropping the
    cancellation (bpo-42130). The fleet's task then ran on for good, and
    ``asyncio.run``, which cancels each remaining task once, waited for it at exit.
    """
    if task is not None and task.cancelling() > cancels:
        raise asyncio.CancelledError


class Link:
    """One Redis client with the fleet's scripts, made on first use inside the event loop."""

    def __init__(self, target: object, *, timeout: float) -> None:
        check_target(target)
        self.target = target
        self.timeout = timeout
        self._client: Any = None
        self._owned = isinstance(target, str)
        self._scripts: dict[str, Any] = {}
        self._secrets = secrets_of(target)

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        aioredis = _import_redis()
        if isinstance(self.target, str):
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            url = self.target
            for alias, scheme in (("valkey://", "redis://"), ("valkeys://", "rediss://")):
                if url.startswith(alias):
                    url = scheme + url[len(alias) :]
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
        self._scripts["REPAIR"] = client.register_script(REPAIR)
        return client

    async def run(self, batch: Sequence[tuple[str, Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Run ``(script, keys, args)`` calls in one pipelined round trip; their replies in order.

        An empty batch is a ``PING``: every round asks Redis something, so a
        Redis that stalls is noticed within one round whatever the traffic (a
        round with nothing to read used to skip Redis, and a stall then took
        two rounds and a time limit, 0.25 s, to notice).

        A script that fails on the data it met (``WRONGTYPE``, a Lua error on a
        value seawall did not write) gives a ``BadReply`` in its place; the
        others' replies stand.

        :raises LinkError: on any other Redis error or when the reply is late;
            its text is redacted (redis-py's messages may quote the URL).
        """
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            client = self._connect()
            async with asyncio.timeout(self.timeout + _BACKSTOP):
                if not batch:
                    await client.ping()
                    replies: list[Any] = []
                else:
                    async with client.pipeline(transaction=False) as pipe:
                        for name, keys, args in batch:
                            await self._scripts[name](keys=keys, args=args, client=pipe)
                        replies = list(await pipe.execute(raise_on_error=False))
        except (Exception, TimeoutError) as exc:
            _honour_cancel(task, cancels)
            text = scrub(f"{type(exc).__name__}: {exc}", self._secrets)
            raise LinkError(text) from None  # (the cause's text is not redacted)
        _honour_cancel(task, cancels)
        for i, reply in enumerate(replies):
            if isinstance(reply, Exception):
                text = scrub(f"{type(reply).__name__}: {reply}", self._secrets)
                if not _about_data(reply, text):
                    raise LinkError(text)  # READONLY, OOM, NOAUTH...: Redis is not usable
                replies[i] = BadReply(text)
        return replies

    def scrub(self, text: str) -> str:
        """``text`` with this link's secrets (any piece of the URL's user-info) masked."""
        return scrub(text, self._secrets)

    def reset(self) -> None:
        """Forget a client this link made (its event loop ended): the next round makes one.

        A client passed in is kept: its connections are its owner's to manage.
        """
        if self._owned:
            self._client = None
            self._scripts.clear()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._owned:
            await client.aclose()
