"""The module-level API: ``@seawall.retry`` (bare, with arguments) over ``seawall.configure``."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

import seawall
from tests.conftest import Upstream, status


@pytest.fixture(autouse=True)
def _fresh_default() -> Iterator[None]:
    """Each test starts from a new default Seawall, and leaves one behind."""
    seawall.configure()
    yield
    seawall.configure()


async def test_bare_retry_retries_a_real_upstream_with_the_default_seawall(
    upstream: tuple[Upstream, TestServer],
) -> None:
    """@seawall.retry, no parentheses: a 503 then 200 from a real server is one success."""
    up, server = upstream
    up.then(status(503))
    upstream_url = str(server.make_url(""))

    @seawall.retry
    async def fetch(path: str) -> int:
        async with aiohttp.ClientSession() as session, session.get(upstream_url + path) as r:
            r.raise_for_status()
            return r.status

    assert await fetch("/x") == 200
    assert up.hits == 2
    detail = seawall.default_seawall().health()["keys"][fetch.__qualname__]
    assert detail["retries"] == 1


async def test_retry_with_arguments_on_attempts_key() -> None:
    """on= narrows to listed types, attempts= caps the attempts, key= names the state."""

    class Stale(Exception):
        pass

    calls = {"stale": 0, "other": 0}

    @seawall.retry(on=Stale, attempts=5, key="reads")
    async def read(kind: str, key: str = "own") -> str:
        calls[kind] += 1
        if kind == "stale":
            raise Stale("stale read")
        raise KeyError(key)

    with pytest.raises(Stale) as stale:
        await read("stale")
    assert calls["stale"] == 5
    assert len([n for n in stale.value.__notes__ if "attempt" in n]) >= 5
    with pytest.raises(KeyError) as other:
        await read("other", key="k1")  # the function's own key reaches it
    assert other.value.args == ("k1",)
    assert calls["other"] == 1  # not in on=: raised at once
    assert set(seawall.default_seawall().health()["keys"]) == {"reads"}


async def test_retry_with_a_predicate() -> None:
    seen: list[int] = []

    @seawall.retry(on=lambda e: isinstance(e, ValueError) and "again" in str(e), attempts=4)
    async def parse(n: int) -> int:
        seen.append(n)
        if len(seen) < 3:
            raise ValueError("again")
        if len(seen) == 3:
            raise ValueError("bad input")
        return n

    with pytest.raises(ValueError, match="bad input"):
        await parse(7)
    assert seen == [7, 7, 7]


async def test_configure_replaces_the_default_even_for_functions_decorated_before() -> None:
    hits = 0

    @seawall.retry
    async def down() -> None:
        nonlocal hits
        hits += 1
        raise ConnectionResetError("reset")

    with pytest.raises(ConnectionResetError):
        await down()
    assert hits == 3  # the default policy: 3 attempts
    mine = seawall.configure(policy=seawall.Policy(retry=seawall.RetryPolicy(max_attempts=2)))
    assert seawall.default_seawall() is mine
    hits = 0
    with pytest.raises(ConnectionResetError):
        await down()
    assert hits == 2
    assert down.__qualname__ in mine.health()["keys"]
    other = seawall.Seawall()
    assert seawall.configure(other) is other


async def test_test_mode_covers_the_default_seawall() -> None:
    hits = 0

    @seawall.retry(attempts=5)
    async def down() -> None:
        nonlocal hits
        hits += 1
        raise ConnectionResetError("reset")

    with seawall.testing.mode(attempts=1), pytest.raises(ConnectionResetError):
        await down()
    assert hits == 1


def test_bad_arguments_say_what_to_give() -> None:
    with pytest.raises(ValueError, match="whole number >= 1"):
        seawall.retry(attempts=0)
    with pytest.raises(TypeError, match="give an exception type"):
        seawall.retry(on="ValueError")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="either a Seawall or"):
        seawall.configure(seawall.Seawall(), policy=seawall.Policy())
    with pytest.raises(TypeError, match="is not callable"):
        seawall.retry("fetch")  # type: ignore[call-overload]


async def test_retry_without_a_key_names_a_partial_or_callable_object_by_what_it_calls() -> None:
    """@seawall.retry on a partial or a callable object, no key=: keyed by the function
    underneath (or the object's class), as sw.call keys them."""

    async def fetch(url: str) -> str:
        return url

    class Fetcher:
        async def __call__(self, url: str) -> str:
            return url

    def read(path: str) -> str:
        return path

    assert await seawall.retry(functools.partial(fetch, "u"))() == "u"
    assert await seawall.retry(on=ConnectionError)(Fetcher())("v") == "v"
    assert seawall.retry(functools.partial(read, "w"))() == "w"
    keys = set(seawall.default_seawall().health()["keys"])
    assert keys == {fetch.__qualname__, Fetcher.__qualname__, read.__qualname__}
