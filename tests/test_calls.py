"""Plain function calls: no swallowed arguments, ``sw.using``, ``@sw.protect`` bare, ``on=``."""

from __future__ import annotations

import functools
import gc
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest

import seawall
from seawall._path.spec import call_key
from seawall.call_options import TAKES_OPTIONS


class Flaky:
    """Fails with ``error`` ``times`` times, then returns what it was called with."""

    def __init__(self, times: int, error: Exception | None = None) -> None:
        self.times = times
        self.error = error or ConnectionResetError("connection reset")
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if len(self.calls) <= self.times:
            raise self.error
        return kwargs


async def test_call_refuses_a_key_the_function_takes_too() -> None:
    """sw.call(cache_get, key=...) no longer swallows cache_get's own key: it says what to do."""
    sw = seawall.Seawall()
    seen: list[str] = []

    async def cache_get(key: str) -> str:
        seen.append(key)
        return key

    with pytest.raises(TypeError, match=r"cache_get takes key= itself.*sw\.using\(key=") as info:
        await sw.call(cache_get, key="user:1")
    assert "sw.using" in str(info.value)
    assert seen == []
    assert sw.health()["keys"] == {}  # nothing ran, no state made under the wrong key


@pytest.mark.parametrize("name", ["context", "policy"])
async def test_call_refuses_context_and_policy_the_function_takes(name: str) -> None:
    sw = seawall.Seawall()

    async def handler(context: object = None, policy: object = None) -> None:
        return None

    given: dict[str, Any] = {
        "context": {"a": 1},
        "policy": seawall.Policy(),
    }
    with pytest.raises(TypeError, match=f"takes {name}= itself"):
        await sw.call(handler, **{name: given[name]})


async def test_using_passes_every_keyword_to_the_function() -> None:
    """sw.using(key=...).call(fn, key=..., context=..., policy=...): all three reach fn."""
    sw = seawall.Seawall()
    got: list[tuple[str, object, object]] = []

    async def cache_get(key: str, context: object = None, policy: object = None) -> str:
        got.append((key, context, policy))
        return key

    value = await sw.using(key="cache").call(cache_get, key="user:1", context="c", policy="p")
    assert value == "user:1"
    assert got == [("user:1", "c", "p")]
    assert set(sw.health()["keys"]) == {"cache"}


async def test_call_keeps_seawall_key_where_the_function_has_none() -> None:
    """The old form still works when nothing collides (and **kwargs catch-alls do not collide)."""
    sw = seawall.Seawall()
    flaky = Flaky(times=1)

    assert await sw.call(flaky, key="flaky", x=1) == {"x": 1}
    assert flaky.calls == [{"x": 1}, {"x": 1}]
    assert set(sw.health()["keys"]) == {"flaky"}


async def test_protect_bare_and_with_arguments() -> None:
    """@sw.protect without parentheses protects under the function's name; with them, the key."""
    sw = seawall.Seawall()
    hits = {"bare": 0, "named": 0}

    @sw.protect
    async def bare(n: int) -> int:
        hits["bare"] += 1
        if hits["bare"] == 1:
            raise ConnectionResetError("reset")
        return n * 2

    @sw.protect()
    async def empty(n: int) -> int:
        return n

    @sw.protect(key="named")
    async def named(key: str) -> str:
        hits["named"] += 1
        return key

    assert await bare(21) == 42
    assert hits["bare"] == 2  # retried
    assert await empty(3) == 3
    assert await named(key="mine") == "mine"  # the function's own key reaches it
    assert bare.__name__ == "bare"
    keys = set(sw.health()["keys"])
    assert {"named", bare.__qualname__, empty.__qualname__} <= keys
    assert "mine" not in keys


async def test_protect_rejects_what_is_not_a_function_clearly() -> None:
    sw = seawall.Seawall()
    with pytest.raises(TypeError, match="wrap a function; 42 is not callable"):
        sw.protect(42)  # type: ignore[call-overload]


async def test_on_narrows_what_is_retried() -> None:
    """on=: a listed exception is retried (even one the classifier would not retry), others not."""
    sw = seawall.Seawall(policy=seawall.Policy(retry=seawall.RetryPolicy(max_attempts=4)))

    class Stale(Exception):
        pass

    listed = Flaky(times=3, error=Stale("stale read"))
    assert await sw.using(on=Stale).call(listed) == {}
    assert len(listed.calls) == 4  # an unknown error is otherwise retried at most once

    other = Flaky(times=3)  # ConnectionResetError: retried by default, but not in on=
    with pytest.raises(ConnectionResetError) as info:
        await sw.using(on=(Stale, KeyError)).call(other)
    assert len(other.calls) == 1
    assert any("on=" in note for note in info.value.__notes__)

    picky = Flaky(times=2, error=ValueError("retry me"))
    assert await sw.using(on=lambda e: "retry" in str(e)).call(picky) == {}
    assert len(picky.calls) == 3


@pytest.mark.parametrize("bad", [3, "ValueError", (), (ValueError, 1)])
def test_on_rejects_what_is_not_an_exception_type_or_predicate(bad: Any) -> None:
    with pytest.raises(TypeError, match="give an exception type"):
        seawall.Seawall().using(on=bad)


async def test_call_allows_a_key_the_positional_arguments_already_fill() -> None:
    """sw.call(get, "user:1", key="cache"): get's key is given, so key= is seawall's."""
    sw = seawall.Seawall()

    async def get(key: str) -> str:
        return key

    class Client:
        async def get(self, key: str) -> str:
            return key

    assert await sw.call(get, "user:1", key="cache") == "user:1"
    assert await sw.call(Client().get, "user:2", key="cache") == "user:2"
    with pytest.raises(TypeError, match="takes key= itself"):
        await sw.call(Client().get, key="user:3")
    assert set(sw.health()["keys"]) == {"cache"}


class _Payload(bytearray):
    """A request body a weak reference can follow."""


async def test_options_keep_no_callable_alive() -> None:
    """The option check remembers no callable: a partial and what it holds die after the call."""
    sw = seawall.Seawall()

    async def post(body: bytes, *, api_key: str) -> int:
        return len(body)

    def count(body: bytes) -> int:
        return len(body)

    class Client:
        def __init__(self, body: bytes) -> None:
            self.body = body

        async def __call__(self) -> int:
            return len(self.body)

    def wrapped(body: bytes) -> Any:
        @functools.wraps(post)
        async def inner(*args: Any, **kwargs: Any) -> int:
            return len(body)

        return inner

    refs: list[weakref.ref[_Payload]] = []
    for _ in range(5):
        bodies = [_Payload(b"x" * 1000) for _ in range(5)]
        refs += [weakref.ref(body) for body in bodies]
        assert await sw.call(functools.partial(post, bodies[0], api_key="k"), key="p") == 1000
        assert await sw.call(Client(bodies[1]), key="p") == 1000
        assert await sw.call(wrapped(bodies[2]), key="p", context={"a": 1}) == 1000
        assert sw.call_sync(functools.partial(count, bodies[3]), key="s") == 1000
        assert sw.call_sync(functools.partial(len, bodies[4]), key="s") == 1000
        del bodies
    gc.collect()
    assert [ref for ref in refs if ref() is not None] == []


async def test_options_are_still_checked_on_what_is_not_a_plain_function() -> None:
    """Partials, wrapped functions and callable objects taking key= still refuse sw.call(key=)."""
    sw = seawall.Seawall()

    async def get(key: str, *, fresh: bool = False) -> str:
        return key

    @functools.wraps(get)
    async def wrapper(*args: Any, **kwargs: Any) -> str:
        return await get(*args, **kwargs)

    class Getter:
        async def __call__(self, key: str) -> str:
            return key

    for fn in (functools.partial(get, fresh=True), wrapper, Getter()):
        for _ in range(2):  # the second time from what was remembered
            with pytest.raises(TypeError, match="takes key= itself"):
                await sw.call(fn, key="user:1")
            assert await sw.call(fn, "user:1", key="cache") == "user:1"
    assert await sw.call(functools.partial(get, "user:2"), key="cache") == "user:2"


@pytest.mark.parametrize("bad", ["critical", ["critical"], 5])
async def test_a_context_that_is_not_a_mapping_is_refused_up_front(bad: Any) -> None:
    """context= must be a mapping: every form says so before calling, naming context=."""
    sw = seawall.Seawall()
    ran: list[int] = []

    async def fn() -> int:
        ran.append(1)
        return 1

    match = r"context=.*give the call context as a mapping"
    with pytest.raises(TypeError, match=match):
        await sw.call(fn, key="c", context=bad)
    with pytest.raises(TypeError, match=match):
        await sw.call(fn, context=bad)
    with pytest.raises(TypeError, match=match):
        sw.using(key="c", context=bad)
    with pytest.raises(TypeError, match=match):
        sw.protect(key="c", context=bad)
    with pytest.raises(TypeError, match=match):
        sw.call_sync(len, "abc", context=bad)
    with pytest.raises(TypeError, match=match):
        seawall.retry(context=bad)
    assert ran == []
    assert await sw.call(fn, key="c", context={"critical": True}) == 1


class _AsyncCallable:
    """An object with ``async def __call__``: calling it gives a coroutine."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, x: int) -> int:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionResetError("reset")
        return x


class _Service:
    @staticmethod
    async def double(x: int) -> int:
        return 2 * x


async def test_decorators_tell_async_callables_that_are_not_async_defs() -> None:
    """An object with async __call__, a staticmethod, a partial: awaited and retried, not run
    in a thread."""
    sw = seawall.Seawall()

    async def triple(x: int) -> int:
        return 3 * x

    obj = _AsyncCallable()
    assert await sw.protect(obj)(5) == 5
    assert obj.calls == 2  # retried
    again = _AsyncCallable()
    assert await sw.protect(key="obj")(again)(6) == 6
    assert again.calls == 2
    assert await sw.using(key="obj").protect(_AsyncCallable())(7) == 7
    assert await seawall.retry(_AsyncCallable())(8) == 8
    assert await sw.protect(staticmethod(_Service.double))(9) == 18
    assert await sw.protect(functools.partial(triple, 10))() == 30
    assert await seawall.retry(key="p")(functools.partial(triple))(11) == 33


async def test_a_protected_staticmethod_stays_static() -> None:
    """@sw.protect over @staticmethod in a class body gives a staticmethod, async kept."""
    sw = seawall.Seawall()

    class Service:
        @sw.protect(key="svc")
        @staticmethod
        async def double(x: int) -> int:
            return 2 * x

    assert await Service.double(4) == 8
    assert await Service().double(5) == 10
    assert set(sw.health()["keys"]) == {"svc"}


async def _numbers(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


class _Stream:
    async def __call__(self, n: int) -> AsyncIterator[int]:
        yield n


async def test_async_generator_functions_are_refused_with_what_to_do() -> None:
    """A stream cannot be retried item by item: every form refuses an async generator
    function, and says to protect what consumes it or to use the block form."""
    sw = seawall.Seawall()
    match = r"async generator function.*protect the async function that consumes.*sw\.attempts"
    for fn in (_numbers, functools.partial(_numbers, 3), _Stream()):
        with pytest.raises(TypeError, match=match):
            sw.protect(fn)
        with pytest.raises(TypeError, match=match):
            sw.protect(key="s")(fn)
        with pytest.raises(TypeError, match=match):
            seawall.retry(fn)
        with pytest.raises(TypeError, match=match):
            sw.call_sync(fn, 1)
        with pytest.raises(TypeError, match=match):
            sw.using(key="s").call_sync(fn, 1)
    with pytest.raises(TypeError, match=r"returned async_generator.*sw\.attempts"):
        await sw.call(_numbers, 2)  # type: ignore[arg-type]


class BadStr(Exception):
    """An exception whose ``__str__`` raises (an SDK's error formatting a missing field)."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


class BadRepr(Exception):
    """An exception whose ``__repr__`` raises."""

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ exploded")


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("kind", [BadStr, BadRepr])
async def test_an_exception_that_cannot_be_shown_reaches_the_caller(kind: type[Exception]) -> None:
    """An exception whose ``__str__`` or ``__repr__`` raises is the caller's, counted
    as an attempt; seawall's notes name its type and say its text could not be read."""
    sw = seawall.Seawall(seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1)))
    error = kind("x")

    async def weird() -> None:
        raise error

    with pytest.raises(kind) as caught:
        await sw.call(weird, key="k")
    assert caught.value is error
    health = sw.health().by_key["k"]
    assert (health.requests, health.attempts) == (1, 1)
    assert sum(health.failures.values()) == 1
    first = caught.value.__notes__[0]
    assert first.startswith("seawall: attempt 1: ")
    assert kind.__name__ in first
    if kind is BadRepr:
        assert "__repr__ raised RuntimeError" in first


@pytest.mark.parametrize("kind", [BadStr, BadRepr])
async def test_a_probe_that_raises_an_unshowable_exception_gives_its_permit_back(
    kind: type[Exception],
) -> None:
    """A half-open probe failing with such an exception reopens the breaker (the permit
    is not lost: the key is not refused for ever) and leaves nothing in flight."""
    clock = Clock()
    breaker = seawall.BreakerPolicy(
        failure_threshold=1, recovery_timeout=1.0, probe_share=0, hold=0
    )
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1), breaker=breaker), clock=clock
    )

    async def down() -> None:
        raise ConnectionError("down")

    async def weird() -> None:
        raise kind("x")

    async def ok() -> str:
        return "ok"

    with pytest.raises(ConnectionError):
        await sw.call(down, key="k")
    clock.now += 100.0
    with pytest.raises(kind):
        await sw.call(weird, key="k")  # the probe
    assert sw.health().by_key["k"].state == "open"
    assert sw.registry.view["k"].cooldown.inflight == 0
    clock.now += 100.0
    assert await sw.call(ok, key="k") == "ok"
    assert sw.health().by_key["k"].state == "closed"


class Abort(BaseException):
    """Not an ``Exception``: plugins are not isolated from it, as from an interrupt."""


async def test_whatever_ends_settling_early_gives_the_probe_permit_back() -> None:
    """A classifier plugin that raises past the plugin isolation during a probe ends
    that call, and the probe's permit and in-flight count go back all the same."""

    class Aborting:
        armed = False

        @seawall.hookimpl(tryfirst=True)
        def seawall_classify(self, outcome: seawall.Outcome) -> None:
            if self.armed:
                raise Abort

    clock = Clock()
    plugin = Aborting()
    breaker = seawall.BreakerPolicy(
        failure_threshold=1, recovery_timeout=1.0, probe_share=0, hold=0
    )
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1), breaker=breaker),
        clock=clock,
        plugins=[plugin],
    )

    async def down() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await sw.call(down, key="k")
    clock.now += 100.0
    plugin.armed = True
    with pytest.raises(Abort):
        await sw.call(down, key="k")  # the probe
    plugin.armed = False
    assert sw.registry.view["k"].cooldown.inflight == 0
    with pytest.raises(ConnectionError):
        await sw.call(down, key="k")  # a probe again: the permit came back
    assert sw.health().by_key["k"].state == "open"


async def test_an_exception_raised_again_carries_one_set_of_seawall_notes() -> None:
    """The same exception object failing many calls (a shared future's, a module-level
    one) carries the notes of its last give-up only; the caller's own notes stay."""
    sw = seawall.Seawall(
        seawall.Policy(
            retry=seawall.RetryPolicy(max_attempts=3),
            breaker=seawall.BreakerPolicy(enabled=False),
        )
    )
    shared = ConnectionError("upstream down")
    shared.add_note("mine: added by the caller")

    async def get() -> None:
        raise shared

    for _ in range(50):
        with pytest.raises(ConnectionError):
            await sw.call(get, key="k")
    notes = shared.__notes__
    assert notes[0] == "mine: added by the caller"
    assert notes[-1].startswith("seawall: gave up on k")
    attempts = [note.split(":")[1].strip() for note in notes[1:-1]]  # fewer once the budget ran dry
    assert attempts == [f"attempt {n}" for n in range(1, len(attempts) + 1)]
    assert 1 <= len(attempts) <= 3


async def test_an_on_predicate_that_raises_settles_the_call_and_chains_the_failure() -> None:
    """``on=``'s predicate raising: the call is over (counted as a failed call), and the
    predicate's error is raised chained to the attempt's exception, which has the notes."""
    sw = seawall.Seawall()
    flaky = Flaky(times=5)

    def bad_predicate(exc: BaseException) -> bool:
        raise ValueError("predicate bug")

    with pytest.raises(ValueError, match="predicate bug") as caught:
        await sw.using(key="p", on=bad_predicate).call(flaky)
    original = caught.value.__cause__
    assert original is flaky.error
    assert original.__notes__[-1] == "seawall: gave up on p: on= raised; see its error"
    assert len(flaky.calls) == 1
    health = sw.health().by_key["p"]
    assert (health.requests, health.attempts, health.failures) == (1, 1, {"network": 1})
    assert health.success_rate == 0.0  # the call finished (a failed one)


async def test_a_huge_message_is_cut_in_the_history_and_its_secret_masked() -> None:
    """An exception holding a whole response body: its history line is short, and a
    secret running past the cut is masked, not half shown."""
    sw = seawall.Seawall(seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1)))
    body = "<td>row</td>" * 500_000

    async def fail() -> None:
        raise ConnectionError(f"upstream said: {{'x-api-key': '{'Zq81' * 1000}'}} {body}")

    with pytest.raises(ConnectionError) as caught:
        await sw.call(fail, key="big")
    first = caught.value.__notes__[0]
    assert len(first) < 400
    assert "Zq8" not in first
    assert "'x-api-key': '***" in first


async def test_the_remembered_answer_is_the_code_objects_own() -> None:
    """``TAKES_OPTIONS`` is keyed by ``id``: an entry left under that id by another code
    object (its id reused) is not believed, for a function, a method or a partial."""
    sw = seawall.Seawall()

    async def get(key: str) -> str:
        return key

    class Client:
        async def get(self, key: str) -> str:
            return key

    async def other() -> None:
        return None

    client = Client()
    for fn, code in (
        (get, get.__code__),
        (client.get, Client.get.__code__),
        (functools.partial(get), get.__code__),
    ):
        TAKES_OPTIONS[id(code)] = (other.__code__, False)  # a stale answer: "takes none"
        with pytest.raises(TypeError, match="takes key= itself"):
            await sw.call(fn, key="user:1")
        assert TAKES_OPTIONS[id(code)] == (code, True)


async def test_a_bound_method_is_keyed_by_its_functions_qualified_name() -> None:
    """The lean path's shortcut for a bound method gives ``call_key``'s answer."""
    sw = seawall.Seawall()

    class Client:
        async def get(self) -> str:
            return "ok"

        @classmethod
        async def make(cls) -> str:
            return "made"

    assert await sw.call(Client().get) == "ok"
    assert await sw.call(Client.make) == "made"
    keys = set(sw.health()["keys"])
    assert keys == {call_key(Client().get), call_key(Client.make)}
    assert keys == {Client.get.__qualname__, Client.make.__func__.__qualname__}
