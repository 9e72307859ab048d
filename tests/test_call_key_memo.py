"""``sw.call(fn, key="...")``'s remembered check (``call_options.NO_OPTIONS``).

A plain function found to take no ``key``, ``context`` or ``policy`` of its own is
remembered by ``id`` so that the next call asks one membership test. These tests
hold it to what an ``id`` cannot promise by itself: a freed function's ``id`` is
reused at once by CPython, so an entry must leave with its function, and the
memo must not keep a function (or what its defaults hold) alive.
"""

from __future__ import annotations

import functools
import gc
import threading
import weakref
from typing import Any

import pytest

import seawall
from seawall.call_options import NO_OPTIONS, NO_OPTIONS_MAX


async def test_a_reused_id_is_never_taken_for_the_function_that_had_it() -> None:
    """A function that takes no option is remembered; once freed, a function that takes
    ``key=`` made at the same address is still refused. CPython reuses the address at
    once, so the loop meets the case many times (counted: the test is not vacuous)."""
    sw = seawall.Seawall()
    reused = 0
    for _ in range(200):  # bounded

        async def free() -> str:
            return "ok"

        assert await sw.call(free, key="k") == "ok"
        ident = id(free)
        assert ident in NO_OPTIONS
        del free

        async def takes(key: str) -> str:
            return key

        reused += id(takes) == ident
        with pytest.raises(TypeError, match="takes key= itself"):
            await sw.call(takes, key="user:1")
        assert id(takes) not in NO_OPTIONS
        del takes
    assert reused > 0, "no address was reused: the case was never met"


async def test_the_memo_keeps_no_function_or_its_defaults_alive() -> None:
    """The entry is a weak reference: a remembered function (and a default it holds)
    is freed when its caller lets go, and its entry leaves with it."""
    sw = seawall.Seawall()

    class Payload:
        pass

    payload = Payload()
    held = weakref.ref(payload)

    async def send(body: Payload = payload) -> int:
        return 1

    await sw.call(send, key="send")
    ident = id(send)
    assert ident in NO_OPTIONS
    del send, payload
    gc.collect()  # (the function is in no cycle; this only rules cycles out)
    assert held() is None
    assert ident not in NO_OPTIONS


async def test_a_positional_fill_is_not_remembered() -> None:
    """``fn(key)`` given its ``key`` by position does not collide, but its answer depends
    on the arguments: it is not remembered, and the keyword form is still refused."""
    sw = seawall.Seawall()

    async def get(key: str) -> str:
        return key

    assert await sw.call(get, "user:1", key="k") == "user:1"
    assert id(get) not in NO_OPTIONS
    with pytest.raises(TypeError, match="takes key= itself"):
        await sw.call(get, key="k")


async def test_a_remembered_function_still_has_its_key_type_checked() -> None:
    """The memo answers the collision question only: a key that is not a ``str`` is a
    ``TypeError`` for a remembered function too."""
    sw = seawall.Seawall()

    async def get() -> str:
        return "ok"

    await sw.call(get, key="k")
    assert id(get) in NO_OPTIONS
    with pytest.raises(TypeError, match="key"):
        await sw.call(get, key=7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key"):
        sw.call_sync(lambda: None, key=b"k")  # type: ignore[arg-type]


async def test_a_method_is_remembered_through_its_function() -> None:
    """A bound method is made per access; its function is what is remembered, so a
    second instance's method passes at once, and a method taking ``key`` is refused."""
    sw = seawall.Seawall()

    class Client:
        async def get(self) -> str:
            return "ok"

        async def fetch(self, key: str) -> str:
            return key

    assert await sw.call(Client().get, key="k") == "ok"
    assert id(Client.get) in NO_OPTIONS
    assert await sw.call(Client().get, key="k") == "ok"
    with pytest.raises(TypeError, match="takes key= itself"):
        await sw.call(Client().fetch, key="k")
    assert id(Client.fetch) not in NO_OPTIONS


async def test_a_wrapper_is_remembered_by_the_signature_it_shows() -> None:
    """A ``functools.wraps`` wrapper shows its wrapped function's signature: remembered
    when that names no option (its check cost a signature's each call), refused each
    time when it does, though the wrapper itself takes ``**kwargs``."""
    sw = seawall.Seawall()

    def wrap(fn: Any) -> Any:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return await fn(*args, **kwargs)

        return wrapper

    @wrap
    async def fetch(url: str) -> str:
        return url

    @wrap
    async def lookup(key: str) -> str:
        return key

    assert await sw.call(fetch, "u", key="k") == "u"
    assert id(fetch) in NO_OPTIONS
    assert await sw.call(fetch, "v", key="k") == "v"
    for _ in range(2):
        with pytest.raises(TypeError, match="takes key= itself"):
            await sw.call(lookup, key="k")
    assert id(lookup) not in NO_OPTIONS


async def test_wrapped_and_partial_functions_are_checked_each_time() -> None:
    """A wrapper whose signature names an option, or a partial, is never remembered,
    and its collision is found through the signature it shows."""
    sw = seawall.Seawall()

    async def inner(key: str) -> str:
        return key

    @functools.wraps(inner)
    async def outer(*args: str, **kwargs: str) -> str:
        return await inner(*args, **kwargs)

    for fn in (outer, functools.partial(inner)):
        for _ in range(2):
            with pytest.raises(TypeError, match="takes key= itself"):
                await sw.call(fn, key="k")
        assert id(fn) not in NO_OPTIONS


def test_the_sync_form_shares_the_memo_across_threads() -> None:
    """``call_sync`` reads and fills the same memo from several threads at once: every
    call succeeds, the colliding function is refused in each thread."""
    sw = seawall.Seawall()

    def ok() -> str:
        return "ok"

    def takes(key: str) -> str:
        return key

    results: list[object] = []
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait(timeout=10)
        for _ in range(200):  # bounded
            results.append(sw.call_sync(ok, key="k"))
            try:
                sw.call_sync(takes, key="k")
            except TypeError as exc:
                results.append(type(exc))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results.count("ok") == 800
    assert results.count(TypeError) == 800
    assert id(ok) in NO_OPTIONS


async def test_the_memo_is_bounded() -> None:
    """More distinct live functions than the bound: the memo is cleared when full, never
    larger, and every call is still checked and served."""
    sw = seawall.Seawall()
    keep = []
    for i in range(NO_OPTIONS_MAX + 10):  # bounded

        async def fn(i: int = i) -> int:
            return i

        keep.append(fn)
        assert await sw.call(fn, key="k") == i
        assert len(NO_OPTIONS) <= NO_OPTIONS_MAX
    assert id(keep[-1]) in NO_OPTIONS
