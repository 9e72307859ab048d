"""Type-checked, never run: the decorators keep the signatures they wrap (mypy --strict)."""

from __future__ import annotations

import seawall


class Stale(Exception):
    pass


@seawall.retry
async def bare(url: str, *, retries: int = 1) -> bytes:
    return url.encode()


@seawall.retry(on=(Stale, KeyError), attempts=3, key="reads")
async def narrowed(key: str) -> int:
    return len(key)


@seawall.retry(on=lambda exc: isinstance(exc, Stale))
async def predicate(n: int) -> list[int]:
    return [n]


sw = seawall.configure(policy=seawall.Policy())


@sw.protect
async def protected(q: str) -> str:
    return q


@sw.protect(key="search", on=Stale)
async def protected_args(q: str, key: str) -> str:
    return q + key


async def use() -> None:
    data: bytes = await bare("u", retries=2)
    n: int = await narrowed(key="user:1")
    ns: list[int] = await predicate(1)
    q: str = await protected("x")
    q2: str = await protected_args("x", key="k")

    async def cache_get(key: str) -> str:
        return key

    got: str = await sw.using(key="cache").call(cache_get, key="user:1")
    default: seawall.Seawall = seawall.default_seawall()
    async for attempt in sw.attempts(key="block", on=Stale):
        with attempt:
            number: int = attempt.number
            del number
    del data, n, ns, q, q2, got, default


@seawall.retry
def bare_sync(url: str, *, retries: int = 1) -> bytes:
    return url.encode()


@seawall.retry(on=Stale, attempts=3, key="reads")
def narrowed_sync(key: str) -> int:
    return len(key)


@sw.protect
def protected_sync(q: str) -> str:
    return q


@sw.protect(key="search", on=Stale)
def protected_sync_args(q: str, key: str) -> str:
    return q + key


def use_sync() -> None:
    data: bytes = bare_sync("u", retries=2)
    n: int = narrowed_sync(key="user:1")
    q: str = protected_sync("x")
    q2: str = protected_sync_args("x", key="k")

    def cache_get(key: str) -> str:
        return key

    got: str = sw.using(key="cache").call_sync(cache_get, key="user:1")
    direct: int = sw.call_sync(len, "abc", key="len")
    for attempt in sw.attempts(key="block", on=Stale):
        with attempt:
            number: int = attempt.number
            del number
    del data, n, q, q2, got, direct


def misuse_sync() -> None:
    bare_sync(1)  # type: ignore[arg-type]
    narrowed_sync(nokey="x")  # type: ignore[call-arg]
    wrong: int = protected_sync("x")  # type: ignore[assignment]
    del wrong


async def misuse() -> None:
    await bare(1)  # type: ignore[arg-type]
    await narrowed(nokey="x")  # type: ignore[call-arg]
    wrong: int = await protected("x")  # type: ignore[assignment]
    del wrong
