"""Plain ``def`` functions under seawall: ``sw.call_sync``, decorators on ``def``,
``for attempt in sw.attempts(...)``, and one key's state shared by threads and the loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from aiohttp.test_utils import TestServer

import seawall
import seawall.state
from seawall.cooldown import RECHECK, SPACING, START_RATE
from tests._helpers import Clock
from tests.conftest import Upstream, status


class Stale(Exception):
    """The replica has not caught up yet."""


def _sw(attempts: int = 3, **options: object) -> seawall.Seawall:
    policy = seawall.Policy(retry=seawall.RetryPolicy(max_attempts=attempts))
    return seawall.Seawall(policy, entrypoints=False, **options)  # type: ignore[arg-type]


def _get(url: str) -> str:
    """A blocking GET with the standard library (a 5xx raises urllib's HTTPError, an OSError)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            body: bytes = resp.read()
            return body.decode()
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the connection; the status stays readable
        raise


@pytest.fixture
def _fresh_default() -> Iterator[None]:
    seawall.configure()
    yield
    seawall.configure()


async def test_call_sync_retries_a_real_upstream_in_a_thread(
    upstream: tuple[Upstream, TestServer],
) -> None:
    up, server = upstream
    up.then(status(503), status(502))
    sw = _sw()
    body = await asyncio.to_thread(sw.call_sync, _get, str(server.make_url("/x")), key="blocking")
    assert body == "ok"
    assert up.hits == 3
    keys = sw.health()["keys"]["blocking"]
    assert (keys["requests"], keys["attempts"], keys["retries"]) == (1, 3, 2)


async def test_call_sync_gives_up_with_the_original_error_and_its_history(
    upstream: tuple[Upstream, TestServer],
) -> None:
    up, server = upstream
    up.default = status(503)
    sw = _sw()
    with pytest.raises(urllib.error.HTTPError) as caught:
        await asyncio.to_thread(sw.call_sync, _get, str(server.make_url("/")))
    assert up.hits == 3
    notes = caught.value.__notes__
    assert sum("attempt" in note for note in notes) >= 3
    assert any("max_attempts" in note or "attempts" in note for note in notes[-1:])


def test_waits_sleep_the_thread_with_the_injected_sleep() -> None:
    """Outside test mode the backoff is slept by ``Seawall(sleep=...)``, on its clock."""
    seawall.testing.set_testing(False)
    clock = Clock()
    retry = seawall.RetryPolicy(max_attempts=3, base_delay=0.5, jitter="none")
    sw = seawall.Seawall(
        seawall.Policy(retry=retry), entrypoints=False, clock=clock, sleep=clock.sleep
    )
    seen: list[float] = []

    def flaky() -> str:
        seen.append(clock())
        if len(seen) < 3:
            raise ConnectionError("reset")
        return "done"

    assert sw.call_sync(flaky) == "done"
    assert clock.slept == [0.5, 1.0]
    assert seen == [1000.0, 1000.5, 1001.5]


def test_test_mode_makes_sync_waits_instant() -> None:
    clock = Clock()
    sw = _sw(clock=clock, sleep=clock.sleep)
    calls = []

    def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError
        return len(calls)

    assert sw.call_sync(flaky) == 3
    assert clock.slept == []


def test_protect_bare_and_with_options_on_def_functions() -> None:
    sw = _sw(attempts=5)
    reads: list[str] = []

    @sw.protect
    def ping() -> str:
        return "pong"

    @sw.protect(key="replica", on=Stale)
    def read(key: str) -> str:  # the function's own key= reaches it
        reads.append(key)
        if len(reads) < 3:
            raise Stale(key)
        return f"value of {key}"

    assert ping() == "pong"
    assert ping.__name__ == "ping"
    assert read(key="user:1") == "value of user:1"
    assert reads == ["user:1"] * 3
    assert sw.health()["keys"]["replica"]["retries"] == 2


def test_on_raises_other_exceptions_at_once() -> None:
    sw = _sw(attempts=5)
    calls = []

    @sw.protect(key="narrow", on=Stale)
    def broken() -> None:
        calls.append(1)
        raise ConnectionError("would be retried by the classification")

    with pytest.raises(ConnectionError) as caught:
        broken()
    assert calls == [1]
    assert any("not retried" in note or "on=" in note for note in caught.value.__notes__)


@pytest.mark.usefixtures("_fresh_default")
def test_module_retry_on_def_functions() -> None:
    tries: list[int] = []

    @seawall.retry
    def bare() -> str:
        return "fine"

    @seawall.retry(on=Stale, attempts=4, key="replica")
    def read(n: int) -> int:
        tries.append(n)
        if len(tries) < 4:
            raise Stale
        return n * 2

    assert bare() == "fine"
    assert read(21) == 42
    assert tries == [21] * 4
    assert seawall.default_seawall().health()["keys"]["replica"]["retries"] == 3


def test_open_breaker_refuses_sync_calls_without_calling() -> None:
    breaker = seawall.BreakerPolicy(failure_threshold=2, recovery_timeout=60.0)
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1), breaker=breaker),
        entrypoints=False,
        clock=Clock(),
    )
    calls = []

    def down() -> None:
        calls.append(1)
        raise ConnectionError("refused")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            sw.call_sync(down, key="down")
    with pytest.raises(seawall.CircuitOpenError):
        sw.call_sync(down, key="down")
    assert len(calls) == 2
    assert sw.health()["keys"]["down"]["rejections"] == {"breaker": 1}


def test_the_deadline_stops_sync_retries() -> None:
    seawall.testing.set_testing(False)
    clock = Clock()
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=5, base_delay=1.0, jitter="none"),
        timeout=seawall.TimeoutPolicy(deadline=2.5),
    )
    sw = seawall.Seawall(policy, entrypoints=False, clock=clock, sleep=clock.sleep)

    def slow_failure() -> None:
        clock.now += 0.6
        raise ConnectionError("reset")

    with pytest.raises(ConnectionError) as caught:
        sw.call_sync(slow_failure, key="slow")
    # 0.6 + 1.0 wait + 0.6 = 2.2 s; the next 2.0 s wait would pass the deadline.
    assert clock.slept == [1.0]
    assert "deadline" in caught.value.__notes__[-1]


def test_a_thread_asleep_on_its_turn_waits_out_a_later_429s_pause() -> None:
    """Another caller's 429 while a thread sleeps on its paced turn: the thread looks again
    within ``RECHECK`` and books again behind the new pause, not inside it."""
    seawall.testing.set_testing(False)
    clock = Clock()
    policy = seawall.Policy(retry=seawall.RetryPolicy(max_attempts=2))
    state_box: list[seawall.state.KeyState] = []

    def sleep(seconds: float) -> None:
        if not clock.slept:  # meanwhile, another caller meets "429, Retry-After: 3"
            state_box[0].cooldown.start(3.0)
        clock.sleep(seconds)

    sw = seawall.Seawall(policy, entrypoints=False, clock=clock, sleep=sleep)
    sent: list[float] = []
    sw.call_sync(lambda: sent.append(clock()), key="k")  # the key's state, made on first use
    state_box.append(sw.state_for("k", policy))
    state_box[0].cooldown.start(2.0)  # "429, Retry-After: 2": no call before 1002
    sw.call_sync(lambda: sent.append(clock()), key="k")
    assert sent[1] >= 1003.0  # the pause the second 429 asked for (from 1000 s), in full
    assert max(clock.slept) <= RECHECK


@pytest.mark.parametrize("deadline", [None, 0.03])
def test_threads_woken_late_together_go_spaced_not_at_once(deadline: float | None) -> None:
    """The OS wakes a thread 0.3 s after its paced turn: the turn of the next one has
    passed meanwhile; it waits for its spaced moment instead of going with the first
    (two sends at one instant are what a small bucket refuses). A caller whose deadline
    comes before that moment goes at once rather than be refused."""
    seawall.testing.set_testing(False)
    clock = Clock()
    policy = seawall.Policy(retry=seawall.RetryPolicy(max_attempts=2))
    last = (
        policy
        if deadline is None
        else attrs.evolve(policy, timeout=seawall.TimeoutPolicy(attempt=None, deadline=deadline))
    )

    def sleep(seconds: float) -> None:
        clock.sleep(seconds if clock.slept else seconds + 0.3)  # the first wake-up is late

    sw = seawall.Seawall(policy, entrypoints=False, clock=clock, sleep=sleep)
    sent: list[float] = []
    sw.call_sync(lambda: sent.append(clock()), key="k")  # the key's state, made on first use
    cooldown = sw.state_for("k", policy).cooldown
    cooldown.start(1.0)  # "429, Retry-After: 1", no rate stated: paced from 1001 on
    sw.call_sync(lambda: sent.append(clock()), key="k")
    sw.using(key="k", policy=last).call_sync(lambda: sent.append(clock()))
    assert sent[1] == pytest.approx(1001.3)  # its turn, woken late
    step = 1.0 / START_RATE  # the slow start's first pace
    gap = SPACING * step if deadline is None else 0.0  # 0.04 s: past a 0.03 s deadline
    assert sent[2] - sent[1] == pytest.approx(gap)  # spaced, not at once
    assert cooldown.rate is not None
    assert cooldown.rate >= START_RATE  # paced all along (no 429 in between)


def test_call_sync_refuses_async_functions_and_call_refuses_sync_ones() -> None:
    sw = _sw()

    async def fetch() -> int:
        return 1

    def plain() -> int:
        return 1

    with pytest.raises(TypeError, match=r"await sw\.call"):
        sw.call_sync(fetch).close()
    with pytest.raises(TypeError, match="call_sync"):
        asyncio.run(sw.call(plain))  # type: ignore[arg-type]


def test_call_sync_keeps_a_colliding_key_apart() -> None:
    sw = _sw()

    def cache_get(key: str) -> str:
        return f"cached {key}"

    assert sw.using(key="cache").call_sync(cache_get, key="user:1") == "cached user:1"
    with pytest.raises(TypeError, match=r"sw\.using"):
        sw.call_sync(cache_get, key="user:1")


# --- the sync block form --------------------------------------------------------


def test_sync_block_retries_until_it_succeeds() -> None:
    sw = _sw()
    numbers: list[int] = []
    for attempt in sw.attempts(key="block", on=ConnectionError):
        with attempt:
            numbers.append(attempt.number)
            if attempt.number < 3:
                raise ConnectionError("flaky")
    assert numbers == [1, 2, 3]
    assert sw.health()["keys"]["block"]["retries"] == 2


def test_sync_block_raises_from_the_for_statement_when_it_gives_up() -> None:
    sw = _sw()
    ran: list[int] = []

    def loop() -> None:
        for attempt in sw.attempts(key="block"):
            with attempt:
                ran.append(attempt.number)
                raise ConnectionError("down")

    with pytest.raises(ConnectionError) as caught:
        loop()
    assert ran == [1, 2, 3]
    assert len(caught.value.__notes__) >= 3


def test_sync_block_break_keeps_the_verdict_and_frees_the_permit() -> None:
    breaker = seawall.BreakerPolicy(
        failure_rate=1.0, minimum_calls=1, window=1, half_open_max_calls=1
    )
    sw = seawall.Seawall(seawall.Policy(breaker=breaker), entrypoints=False, clock=Clock())
    for attempt in sw.attempts(key="b"):
        with attempt:
            pass
        break
    # A break inside an open block reports a success; a second loop gets a permit again.
    ran = []
    for attempt in sw.attempts(key="b"):
        with attempt:
            ran.append(attempt.number)
    assert ran == [1]
    assert sw.health()["keys"]["b"]["successes"] == 2


def test_sync_block_without_with_is_a_clear_error() -> None:
    sw = _sw()
    with pytest.raises(RuntimeError, match="inside `with attempt:`"):
        for _attempt in sw.attempts(key="forgot"):
            pass


def test_sync_block_interrupt_propagates_and_gives_no_verdict() -> None:
    sw = _sw()

    def loop() -> None:
        for attempt in sw.attempts(key="ctrl-c"):
            with attempt:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop()
    detail = sw.health()["keys"]["ctrl-c"]
    assert (detail["attempts"], detail["failures"]) == (0, {})


# --- threads and the event loop on one key --------------------------------------------


async def test_threads_and_the_event_loop_share_one_breaker() -> None:
    """8 threads and the event loop fail on one key: the breaker opens once, counts add up."""
    threads, per_thread, on_loop = 8, 150, 150
    breaker = seawall.BreakerPolicy(
        failure_threshold=10_000,
        failure_rate=0.5,
        window=100,
        minimum_calls=40,
        recovery_timeout=3600,
    )
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1), breaker=breaker),
        entrypoints=False,
        clock=lambda: 1000.0,  # never recovers: once open, it stays open
    )

    def down() -> None:
        raise ConnectionError("refused")

    async def down_async() -> None:
        raise ConnectionError("refused")

    def hammer() -> int:
        refused = 0
        for _ in range(per_thread):
            try:
                sw.call_sync(down, key="shared")
            except seawall.CircuitOpenError:
                refused += 1
            except ConnectionError:
                pass
        return refused

    async def on_the_loop() -> int:
        refused = 0
        for _ in range(on_loop):
            try:
                await sw.call(down_async, key="shared")
            except seawall.CircuitOpenError:
                refused += 1
            except ConnectionError:
                pass
            await asyncio.sleep(0)
        return refused

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show
    try:
        results = await asyncio.gather(
            *(asyncio.to_thread(hammer) for _ in range(threads)), on_the_loop()
        )
    finally:
        sys.setswitchinterval(interval)
    total = threads * per_thread + on_loop
    detail = sw.health()["keys"]["shared"]
    assert detail["transitions"] == {"closed->open": 1}
    assert detail["requests"] == total
    assert detail["attempts"] + detail["rejections"]["breaker"] == total
    assert detail["rejections"]["breaker"] == sum(results)
    assert detail["failures"] == {"network": detail["attempts"]}
    assert detail["attempts"] >= 40


def _together(threads: int, work: Callable[[int], None]) -> None:
    """Run ``work(i)`` in ``threads`` real threads, switching between them as often as possible."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # races show when threads switch often
    try:
        pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in pool)
    finally:
        sys.setswitchinterval(interval)


def test_threads_starting_on_a_new_key_share_one_state() -> None:
    """8 threads meet at each new key at once: one state per key, no call lost."""
    threads, keys = 8, 40
    sw = _sw()
    barrier = threading.Barrier(threads, timeout=30)

    def work(_i: int) -> None:
        for k in range(keys):
            barrier.wait()
            sw.call_sync(int, "1", key=f"new-{k}")

    _together(threads, work)
    detail = sw.health()["keys"]
    assert [detail[f"new-{k}"]["requests"] for k in range(keys)] == [threads] * keys


def test_threads_probe_a_recovering_breaker_once() -> None:
    """Rounds of 8 threads reaching a breaker due a probe at once: one probe, one transition."""
    threads, rounds = 8, 25
    clock = Clock()
    breaker = seawall.BreakerPolicy(failure_threshold=1, recovery_timeout=10.0)
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1), breaker=breaker),
        entrypoints=False,
        clock=clock,
    )
    barrier = threading.Barrier(threads, timeout=30)
    admitted: list[int] = []

    def down(_key: str) -> None:
        admitted.append(1)
        raise ConnectionError("refused")

    def work(i: int) -> None:
        for r in range(rounds):
            key = f"k{r}"
            if i == 0:
                with contextlib.suppress(ConnectionError):
                    sw.using(key=key).call_sync(down, key)  # opens the breaker
                clock.now += 20.0  # due a probe
            barrier.wait()
            with contextlib.suppress(ConnectionError, seawall.CircuitOpenError):
                sw.using(key=key).call_sync(down, key)
            barrier.wait()

    _together(threads, work)
    assert len(admitted) == 2 * rounds  # the opener and one probe per round
    for r in range(rounds):
        transitions = sw.health()["keys"][f"k{r}"]["transitions"]
        assert transitions == {"closed->open": 1, "open->half_open": 1, "half_open->open": 1}


def test_a_misuse_of_call_sync_is_no_success_and_gives_a_probe_back() -> None:
    """A function that returns a coroutine, run by call_sync as a half-open probe: a
    TypeError, no success booked, the breaker not closed, the probe's permit given back."""
    clock = Clock()
    breaker = seawall.BreakerPolicy(
        failure_threshold=1, recovery_timeout=10.0, hold=0, probe_share=0
    )
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1), breaker=breaker),
        entrypoints=False,
        clock=clock,
    )

    def down() -> None:
        raise ConnectionError("refused")

    async def real() -> None:
        raise ConnectionError("still down")

    with pytest.raises(ConnectionError):
        sw.call_sync(down, key="k")
    clock.now += 20.0  # due a probe
    made: list[Any] = []

    def misused() -> Any:
        made.append(real())
        return made[-1]

    with pytest.raises(TypeError, match=r"returned coroutine, an awaitable.*await sw\.call"):
        sw.call_sync(misused, key="k")
    assert inspect.getcoroutinestate(made[0]) == inspect.CORO_CLOSED
    health = sw.health()["keys"]["k"]
    assert health["successes"] == 0
    assert health["state"] != "closed"
    assert "half_open->closed" not in health["transitions"]
    assert health["requests"] == 2
    assert sw.call_sync(lambda: "ok", key="k") == "ok"  # the permit came back: a real probe
    assert sw.health()["keys"]["k"]["state"] == "closed"


def test_call_sync_tells_async_callables_that_are_not_async_defs() -> None:
    """call_sync refuses an object with async __call__, a staticmethod and a partial of an
    async function before calling them, as it refuses an async def."""

    class Fetcher:
        async def __call__(self) -> int:
            return 1

    async def fetch(x: int) -> int:
        return x

    sw = _sw()
    for fn in (Fetcher(), staticmethod(fetch), functools.partial(fetch, 1)):
        with pytest.raises(TypeError, match=r"is an async function.*await sw\.call"):
            sw.call_sync(fn)
    assert sw.health()["keys"] == {}


def _first_row(rows: list[str]) -> str:
    return next(iter(rows))  # a bug: an empty list raises StopIteration


@pytest.mark.usefixtures("_fresh_default")
@pytest.mark.parametrize("form", ["call_sync", "protect", "retry"])
def test_a_function_raising_stop_iteration_fails_loudly(form: str) -> None:
    """StopIteration from a plain function is raised as a RuntimeError chained to it
    (as PEP 479 does for generators), not taken for the end of seawall's loop."""
    sw = _sw()
    if form == "call_sync":
        run: Callable[[], str] = lambda: sw.call_sync(_first_row, [], key="db")  # noqa: E731
    elif form == "protect":
        run = lambda: sw.protect(key="db")(_first_row)([])  # noqa: E731
    else:
        run = lambda: seawall.retry(key="db", on=ConnectionError)(_first_row)([])  # noqa: E731
    with pytest.raises(RuntimeError, match="raised StopIteration") as caught:
        run()
    assert isinstance(caught.value.__cause__, StopIteration)


def test_a_sync_block_raising_stop_iteration_fails_loudly() -> None:
    """A ``with attempt:`` block that raises StopIteration does not end the ``for`` quietly."""
    sw = _sw(attempts=1)

    def block() -> None:
        for attempt in sw.attempts(key="blk"):
            with attempt:
                raise StopIteration("boom")

    with pytest.raises(RuntimeError, match="raised StopIteration") as caught:
        block()
    assert isinstance(caught.value.__cause__, StopIteration)
    assert sw.health()["keys"]["blk"]["failures"] == {"caller": 1}  # a bug of its own


class _BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


def test_call_sync_gives_the_caller_an_exception_whose_str_raises() -> None:
    """In a thread too, such an exception reaches the caller and the probe's permit goes back."""
    clock = Clock()
    breaker = seawall.BreakerPolicy(
        failure_threshold=1, recovery_timeout=1.0, probe_share=0, hold=0
    )
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1), breaker=breaker),
        entrypoints=False,
        clock=clock,
        sleep=clock.sleep,
    )

    def down() -> None:
        raise ConnectionError("down")

    def weird() -> None:
        raise _BadStr("x")

    with pytest.raises(ConnectionError):
        sw.call_sync(down, key="k")
    clock.now += 100.0
    with pytest.raises(_BadStr):
        sw.call_sync(weird, key="k")
    clock.now += 100.0
    assert sw.call_sync(lambda: "ok", key="k") == "ok"
    assert sw.health().by_key["k"].state == "closed"


@pytest.mark.usefixtures("_fresh_default")
def test_a_module_level_exception_does_not_pile_up_notes() -> None:
    """``@seawall.retry`` on a def raising one exception object for ever: one set of notes."""
    seawall.configure(policy=seawall.Policy(breaker=seawall.BreakerPolicy(enabled=False)))
    error = TimeoutError("backend timed out")

    @seawall.retry(key="backend", attempts=2)
    def fetch() -> None:
        raise error

    for _ in range(20):
        with pytest.raises(TimeoutError):
            fetch()
    assert len(error.__notes__) == 3  # two attempts and why seawall stopped


def test_notes_that_are_not_a_list_are_left_alone() -> None:
    """An exception whose ``__notes__`` is not a list still reaches the caller as it is."""
    sw = _sw(attempts=1)
    error = ConnectionError("down")
    error.__notes__ = ("someone's tuple",)  # type: ignore[assignment]  # the point of the test

    def fail() -> None:
        raise error

    with pytest.raises(ConnectionError) as caught:
        sw.call_sync(fail, key="k")
    assert caught.value is error
    assert error.__notes__ == ("someone's tuple",)
