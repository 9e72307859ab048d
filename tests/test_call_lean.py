"""``sw.call``'s lean first attempt: the same books as ``Seawall.run``, never a second call.

With no event observer and no custom classifier, ``sw.call`` (and
``sw.using().call``, ``@sw.protect``, ``seawall.retry``) makes the first
attempt of an idle key itself; a failure hands over to ``Seawall.run`` as its
first attempt. Each test runs the same script once on the lean path and once
with an observer plugin (which turns it off) and compares what a user sees:
results, how often the function ran, ``sw.health()``. The clock is injected,
so the retry budget is exact on both sides.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import io
from collections.abc import Callable
from typing import Any

import pytest

import seawall
from seawall import testing, watchdog
from seawall._path import registry

from ._helpers import Recorder


class _Observer:
    """Implements ``seawall_event``: its presence alone sends every call through ``run``."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    @seawall.hookimpl
    def seawall_event(self, event: Any) -> None:
        self.kinds.append(event.kind)


class _Clock:
    """A clock that moves 1 ms per reading: latencies and budgets are the same on both sides."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def _policy(**timeout: Any) -> seawall.Policy:
    return seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=3),
        breaker=seawall.BreakerPolicy(failure_threshold=2, minimum_calls=100),
        timeout=seawall.TimeoutPolicy(**timeout) if timeout else seawall.TimeoutPolicy(),
    )


def _pair(policy: seawall.Policy | None = None) -> tuple[seawall.Seawall, seawall.Seawall]:
    """A seawall with the lean path and one without it (an observer), on their own clocks."""
    policy = policy or _policy()
    lean = seawall.Seawall(policy, entrypoints=False, clock=_Clock())
    full = seawall.Seawall(policy, entrypoints=False, clock=_Clock(), plugins=[_Observer()])
    return lean, full


class _Answerer:
    """Answers from a script (``"ok"`` once it has run out) and counts the calls."""

    def __init__(self, *script: object) -> None:
        self.script = list(script)
        self.calls = 0

    def answer(self, x: int) -> int:
        self.calls += 1
        answer = self.script.pop(0) if self.script else "ok"
        if isinstance(answer, BaseException):
            raise answer
        return x


class _Upstream(_Answerer):
    """An async function that answers from a script and counts its calls."""

    async def __call__(self, x: int) -> int:
        return self.answer(x)


def _answers() -> list[object]:
    """The script ``_script`` runs (here and in ``test_sync_lean``), new exceptions each time."""
    return [
        "ok",  # call 1: the key's state is created
        "ok",  # call 2: a lean success
        ConnectionError("reset"),  # call 3: retried once
        "ok",
        ValueError("odd"),  # call 4: an unknown error, retried once
        "ok",
        *[ConnectionError("down")] * 6,  # calls 5 and 6: given up after 3 attempts
    ]


#: Fields that depend on how often the clock is read, or on jitter.
_TIMING = {"waited", "retry_after", "cooldown", "last_failure"}  # last_failure: a wall time


def _books(sw: seawall.Seawall, key: str) -> dict[str, Any]:
    """A key's health without the fields that depend on timing."""
    return {
        name: value
        for name, value in sw.health()["keys"][key].items()
        if name not in _TIMING and not name.endswith("latency")
    }


def _same_books(
    lean: seawall.Seawall,
    full: seawall.Seawall,
    lean_run: tuple[list[object], int],
    full_run: tuple[list[object], int],
) -> dict[str, Any]:
    """``_script`` run on ``lean`` and on ``full`` (here, and with the sync forms in
    ``test_sync_lean``): the same results and upstream calls, the same books. The books."""
    (seen_lean, calls_lean), (seen_full, calls_full) = lean_run, full_run
    expected = [7, 7, 7, 7, "ConnectionError", "ConnectionError"]
    assert seen_lean == [*expected, "CircuitOpenError", "CircuitOpenError"]
    assert seen_full == seen_lean
    assert calls_lean == calls_full == 12  # no attempt made twice
    books = _books(lean, "up")
    assert books == _books(full, "up")  # budget balance and breaker included
    assert (books["requests"], books["attempts"], books["retries"]) == (8, 12, 6)
    assert books["state"] == "open"
    return books


async def _script(
    sw: seawall.Seawall, call: Callable[[seawall.Seawall, _Upstream], Any]
) -> tuple[list[object], int]:
    up = _Upstream(*_answers())
    seen: list[object] = []
    for _ in range(8):
        try:
            seen.append(await call(sw, up))
        except (seawall.CircuitOpenError, ConnectionError, ValueError) as exc:
            seen.append(type(exc).__name__)
    return seen, up.calls


async def _by_call(sw: seawall.Seawall, up: _Upstream) -> object:
    return await sw.call(up, 7, key="up")


async def _by_using(sw: seawall.Seawall, up: _Upstream) -> object:
    return await sw.using(key="up").call(up, 7)


async def _by_protect(sw: seawall.Seawall, up: _Upstream) -> object:
    @sw.protect(key="up")
    async def protected(x: int) -> int:
        return await up(x)

    return await protected(7)


@pytest.mark.parametrize("call", [_by_call, _by_using, _by_protect])
async def test_the_lean_call_keeps_the_same_books_as_run(call: Any) -> None:
    """Successes, a retry, a non-retried error, give-ups and a breaker trip: identical books."""
    lean, full = _pair()
    assert lean.registry.call_route("up", None).fast
    assert not full.registry.call_route("up", None).fast

    books = _same_books(lean, full, await _script(lean, call), await _script(full, call))
    assert books["successes"] == 4
    assert lean.costs().to_dict() == full.costs().to_dict()


async def test_a_success_skips_run_and_a_failure_reaches_it_once_with_its_first_attempt() -> None:
    """run() sees no lean success, and a failed first attempt once, already made."""
    sw = seawall.Seawall(_policy(), entrypoints=False)
    seen: list[object] = []
    run = sw.path.run

    async def spy(spec: Any, attempt: Any, first: Any = None) -> Any:
        seen.append(None if first is None else type(first.exc).__name__)
        return await run(spec, attempt, first)

    sw.path.run = spy  # type: ignore[method-assign]
    up = _Upstream("ok", "ok", ConnectionError("reset"), "ok")
    for _ in range(3):
        assert await sw.call(up, 5, key="k") == 5
    assert seen == ["ConnectionError"]  # even the first call, which creates the key's state
    assert up.calls == 4


async def test_lean_successes_count_in_the_breaker_window() -> None:
    """Two lean successes, then two failures: 2 of 4 failed trips the failure-rate rule.

    Were the lean successes not in the window, it would hold 2 calls, under
    ``minimum_calls``, and stay closed.
    """
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(failure_threshold=100, minimum_calls=4, failure_rate=0.5),
    )
    for sw in _pair(policy):
        up = _Upstream("ok", "ok", ConnectionError("a"), ConnectionError("b"))
        for expected in (1, 1, None, None):
            if expected is None:
                with pytest.raises(ConnectionError):
                    await sw.call(up, 1, key="k")
            else:
                assert await sw.call(up, 1, key="k") == expected
        books = _books(sw, "k")
        assert (books["state"], books["failure_rate"]) == ("open", 0.5)


async def test_a_lean_call_earns_retry_budget_like_run() -> None:
    """Each lean call feeds the retry budget as run() does: the same balance after 50 calls."""
    lean, full = _pair()
    for sw in (lean, full):
        up = _Upstream()
        for _ in range(50):
            await sw.call(up, 1, key="up")
    assert _books(lean, "up")["budget_balance"] == _books(full, "up")["budget_balance"]
    assert _books(lean, "up")["budget_balance"] > _books(lean, "up")["retries"]


async def test_a_function_that_is_not_async_is_refused_once() -> None:
    """sw.call(sync_fn) raises TypeError on the lean path as on run(); the function ran once."""
    ran = []

    def sync(x: int) -> int:
        ran.append(x)
        return x

    for sw in _pair():
        with pytest.raises(TypeError, match="not an awaitable"):
            await sw.call(sync, 1)  # type: ignore[arg-type]
    assert ran == [1, 1]


async def test_a_hung_lean_call_times_out_and_is_retried() -> None:
    """The watchdog ends a hung first attempt at the policy's limit; run() retries it."""
    release = asyncio.Event()
    calls = 0

    async def sometimes_hangs() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.wait_for(release.wait(), 10)
        return "ok"

    sw = seawall.Seawall(_policy(attempt=watchdog.MIN_LIMIT, deadline=None), entrypoints=False)
    assert sw.registry.call_route("hang", None).fast
    try:
        assert await sw.call(sometimes_hangs, key="hang") == "ok"
    finally:
        release.set()
    books = _books(sw, "hang")
    assert (books["attempts"], books["retries"], calls) == (2, 1, 2)
    assert not watchdog.of(asyncio.get_running_loop()).deadlines


async def test_a_cancelled_lean_call_counts_nothing() -> None:
    """Cancelling the caller mid-attempt: CancelledError, no failure, no retry, nothing watched."""
    arrived = asyncio.Event()

    async def hang() -> None:
        arrived.set()
        await asyncio.Event().wait()

    sw = seawall.Seawall(_policy(), entrypoints=False)
    task = asyncio.ensure_future(sw.call(hang, key="hang"))
    await asyncio.wait_for(arrived.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    books = _books(sw, "hang")
    assert (books["requests"], books["attempts"], books["failures"]) == (1, 0, {})
    assert not watchdog.of(asyncio.get_running_loop()).deadlines


async def test_an_inbound_deadline_shorter_than_the_attempt_limit_still_bounds_a_call() -> None:
    """seawall.deadline(0.2), a 30 s attempt limit: the call goes through run(), cut at 0.2 s."""
    sw = seawall.Seawall(_policy(), entrypoints=False)

    async def hang() -> None:
        await asyncio.wait_for(asyncio.Event().wait(), 10)

    with seawall.deadline(0.2), pytest.raises((seawall.DeadlineExceededError, TimeoutError)):
        await sw.call(hang, key="hang")
    assert _books(sw, "hang")["cut_by_deadline"] == 1


async def test_what_needs_run_turns_the_lean_path_off() -> None:
    """A deadline under the attempt limit, a short limit, an LLM policy: run() serves them."""
    sw = seawall.Seawall(entrypoints=False)
    assert sw.registry.call_route("k", _policy(attempt=30.0, deadline=60.0)).fast
    assert not sw.registry.call_route("k", _policy(attempt=30.0, deadline=5.0)).fast
    assert not sw.registry.call_route("k", _policy(attempt=0.5)).fast
    assert not sw.registry.call_route("k", seawall.Policy.for_llm()).fast


async def test_test_mode_caps_the_attempts_after_a_lean_first_attempt() -> None:
    """testing.mode(attempts=2): the lean first attempt and one retry, no more."""
    sw = seawall.Seawall(_policy(), entrypoints=False)
    up = _Upstream(*[ConnectionError("down")] * 5)
    with testing.mode(attempts=2), pytest.raises(ConnectionError):
        await sw.call(up, 1, key="k")
    assert up.calls == 2
    assert _books(sw, "k")["attempts"] == 2


async def test_registering_an_observer_later_turns_the_lean_call_off() -> None:
    """Routes of calls are worked out again when plugins change: the next call emits events."""
    sw = seawall.Seawall(_policy(), entrypoints=False)
    up = _Upstream()
    await sw.call(up, 1, key="k")
    recorder = Recorder()
    sw.register(recorder)
    await sw.call(up, 1, key="k")
    assert [e.kind for e in recorder.events] == ["attempt", "call"]
    assert _books(sw, "k")["requests"] == 2


async def test_each_policy_given_to_a_call_is_the_one_used() -> None:
    """The cached route of a key is per policy object: policy=one_try never retries."""
    sw = seawall.Seawall(_policy(), entrypoints=False)
    one_try = seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1))
    up = _Upstream(ConnectionError("a"), ConnectionError("b"))
    assert await sw.call(up, 1, key="k") == 1  # the default policy: retried
    up.script = [ConnectionError("c"), ConnectionError("d")]
    with pytest.raises(ConnectionError):
        await sw.call(up, 1, key="k", policy=one_try)
    assert up.calls == 4


async def test_a_forgotten_key_is_counted_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the registry forgets a key, a cached call route does not keep counting on it."""
    monkeypatch.setattr(registry, "MAX_KEYS", 8)
    sw = seawall.Seawall(_policy(), entrypoints=False)
    up = _Upstream()
    await sw.call(up, 1, key="first")
    for n in range(20):
        await sw.call(up, 1, key=f"other{n}")
    assert "first" not in sw.health()["keys"]
    await sw.call(up, 1, key="first")
    assert _books(sw, "first")["requests"] == 1


async def test_a_type_error_of_the_function_is_not_taken_for_a_missing_await() -> None:
    """Only a result that cannot be awaited is the caller's mistake; the function's own
    TypeError (a plain function raising before it returns anything, or a coroutine's)
    is a failure like any other, on the lean path as through run()."""

    def plain_raises() -> Any:
        raise TypeError("own")

    async def async_raises() -> None:
        raise TypeError("own")

    for fn in (plain_raises, async_raises):
        seen = []
        for sw in _pair():
            with pytest.raises(TypeError, match="own") as info:
                await sw.call(fn, key="k")
            assert "awaitable" not in str(info.value)
            seen.append(_books(sw, "k"))
        assert seen[0] == seen[1]
        assert seen[0]["attempts"] == 1  # a TypeError is a bug of the caller: never retried


async def test_the_collision_check_remembered_per_code_still_refuses_every_clash() -> None:
    """sw.call(fn, key=...) remembers per code object that a function takes no option;
    closures of a function that does take one, and wrappers that borrow such a
    signature (functools.wraps), are refused every time."""
    sw = seawall.Seawall(_policy(), entrypoints=False)

    def make() -> Callable[..., Any]:
        async def takes_key(key: str) -> str:
            return key

        return takes_key

    async def plain(x: int) -> int:
        return x

    for _ in range(3):  # a new closure each time, one code object
        with pytest.raises(TypeError, match="takes key= itself"):
            await sw.call(make(), key="k")
        assert await sw.call(plain, 1, key="k") == 1

    inner = make()

    @functools.wraps(inner)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await inner(*args, **kwargs)

    with pytest.raises(TypeError, match="takes key= itself"):
        await sw.call(wrapper, key="k")
    assert await sw.call(make(), "mine", key="k") == "mine"  # filled by position: no clash


def test_sw_call_shows_its_options_in_its_signature_and_keeps_them_from_fn() -> None:
    """``sw.call`` reads its options out of ``**kwargs`` (cheaper than keyword-only
    parameters), but its signature and help still show them."""
    import inspect

    signature = inspect.signature(seawall.Seawall.call)
    kinds = {name: p.kind for name, p in signature.parameters.items()}
    for option in ("key", "context", "policy"):
        assert kinds[option] is inspect.Parameter.KEYWORD_ONLY
    assert kinds["args"] is inspect.Parameter.VAR_POSITIONAL
    assert kinds["kwargs"] is inspect.Parameter.VAR_KEYWORD
    assert seawall.Seawall.call.__name__ == "call"
    assert "under seawall's protection" in (seawall.Seawall.call.__doc__ or "")


async def test_sw_call_options_go_to_seawall_and_other_keywords_to_fn() -> None:
    sw = seawall.Seawall(_policy(), entrypoints=False, clock=_Clock())
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    async def fn(*args: Any, **kwargs: Any) -> str:
        seen.append((args, kwargs))
        return "ok"

    assert await sw.call(fn, 1, key="k", context={"a": 1}, size=2) == "ok"
    assert await sw.call(fn, 3, key=None, size=4) == "ok"  # None: the default key
    assert seen == [((1,), {"size": 2}), ((3,), {"size": 4})]
    assert sw.health()["keys"]["k"]["successes"] == 1

    async def takes_key(key: str) -> str:
        return key

    with pytest.raises(TypeError, match=r"sw\.using"):
        sw.call(takes_key, key="k")  # fn names the option itself: raised at once, no coroutine
    await sw.aclose()


_SECRET = "sk-live-0123456789abcdefSECRET"


def _send(payload: object, *, api_key: str) -> dict[str, bool]:
    """A plain function, given to sw.call by mistake."""
    return {"ok": True}


class _Client:
    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:  # as many SDK clients do
        return f"Client(token={self.token!r})"

    def fetch(self, x: int) -> int:
        return x


async def _each_async_form(sw: seawall.Seawall, fn: Any, *args: Any) -> list[BaseException]:
    """What ``fn`` misused through each async form raised: sw.call (bare, key=),
    sw.using().call."""
    errors: list[BaseException] = []
    forms = (
        lambda: sw.call(fn, *args),
        lambda: sw.call(fn, *args, key="k"),
        lambda: sw.using(key="u").call(fn, *args),
    )
    for form in forms:
        with pytest.raises(TypeError) as info:
            await form()
        errors.append(info.value)
    return errors


async def test_the_not_awaitable_error_names_the_function_never_its_repr() -> None:
    """A partial or bound method holding a secret, given to sw.call though it is not async:
    the TypeError names the function underneath, never repr(fn), in every async form."""
    header = {"Authorization": f"Bearer {_SECRET}"}
    cases: list[tuple[Callable[..., Any], tuple[int, ...], str]] = [
        (functools.partial(_send, {"x": 1}, api_key=_SECRET), (), "_send"),
        (functools.partial(_send, header, api_key="x"), (), "_send"),
        (_Client(_SECRET).fetch, (1,), "_Client.fetch"),
    ]
    for sw in _pair():
        for fn, args, name in cases:
            for error in await _each_async_form(sw, fn, *args):
                assert "not an awaitable" in str(error)
                assert _SECRET[:12] not in str(error)
                assert f"{name}(...) returned" in str(error)


async def test_a_coroutine_object_is_refused_with_what_to_pass_instead() -> None:
    """sw.call(fetch(url)) says to pass fetch itself, and closes the coroutine it was given."""

    async def fetch(url: str) -> str:
        return url

    for sw in _pair():
        for how in ({}, {"key": "k"}):
            coro = fetch("https://example.test/")
            with pytest.raises(TypeError, match=r"pass fetch, not fetch\(\.\.\.\)") as info:
                await sw.call(coro, **how)  # type: ignore[arg-type]
            assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED  # so no warning
            assert "sw.call(fetch, ...)" in str(info.value)
        coro = fetch("https://example.test/")
        with pytest.raises(TypeError, match=r"pass fetch, not fetch\(\.\.\.\)"):
            await sw.using(key="u").call(coro)  # type: ignore[arg-type]
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        assert sw.health()["keys"]["k"]["failures"] == {}  # a misuse, not an upstream failure


async def test_a_file_the_failed_lean_attempt_closed_is_not_given_again() -> None:
    """Whether the arguments can be given again is judged as they were before the lean
    attempt: a file it read and closed stops the retries (with the original error), as
    on the full path. Judged after the attempt, a closed file no longer counted as read
    as used, and the retry got it closed (a ValueError, not the call's error)."""
    lean, full = _pair()
    for sw in (lean, full):
        bodies: list[bytes] = []

        async def upload(body: io.BytesIO, bodies: list[bytes] = bodies) -> None:
            with body:
                bodies.append(body.read())
            raise ConnectionError("reset after the body")

        with pytest.raises(ConnectionError) as caught:
            await sw.call(upload, io.BytesIO(b"body"), key="up")
        assert bodies == [b"body"]
        assert "cannot be given again" in caught.value.__notes__[-1]
    assert _books(lean, "up") == _books(full, "up")
