"""The sync forms' lean first attempt: the same books as ``SyncRun``, never a second call.

``sw.call_sync``, ``sw.using().call_sync``, ``@sw.protect`` and ``@seawall.retry``
on a ``def`` make the first attempt of an idle key themselves
(``seawall.sync.call_fn``); a failure hands over to the thread's loop as its first
attempt. Each test runs the same script on the lean path and with an observer
plugin (which turns it off), and compares what a user sees.
"""

from __future__ import annotations

import inspect
import io
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import seawall
from seawall import deadline
from tests.test_call_lean import (
    _Answerer,
    _answers,
    _books,
    _Clock,
    _Observer,
    _pair,
    _policy,
    _same_books,
)


@pytest.fixture
def _fresh_default() -> Iterator[None]:
    seawall.configure()
    yield
    seawall.configure()


class _Upstream(_Answerer):
    """A plain function that answers from a script and counts its calls."""

    def __call__(self, x: int) -> int:
        return self.answer(x)


def _script(sw: seawall.Seawall, call: Callable[[seawall.Seawall, _Upstream], Any]) -> Any:
    up = _Upstream(*_answers())
    seen: list[object] = []
    for _ in range(8):
        try:
            seen.append(call(sw, up))
        except (seawall.CircuitOpenError, ConnectionError, ValueError) as exc:
            seen.append(type(exc).__name__)
    return seen, up.calls


def _by_call_sync(sw: seawall.Seawall, up: _Upstream) -> object:
    return sw.call_sync(up, 7, key="up")


def _by_function(sw: seawall.Seawall, up: _Upstream) -> object:
    def fetch(x: int) -> int:
        return up(x)

    return sw.call_sync(fetch, 7, key="up")


def _by_using(sw: seawall.Seawall, up: _Upstream) -> object:
    return sw.using(key="up").call_sync(up, 7)


def _by_protect(sw: seawall.Seawall, up: _Upstream) -> object:
    @sw.protect(key="up")
    def protected(x: int) -> int:
        return up(x)

    return protected(7)


def _by_retry(sw: seawall.Seawall, up: _Upstream) -> object:
    seawall.configure(sw)

    @seawall.retry(key="up")
    def protected(x: int) -> int:
        return up(x)

    return protected(7)


@pytest.fixture
def _fresh_default() -> Iterator[None]:
    seawall.configure()
    yield
    seawall.configure()


@pytest.mark.usefixtures("_fresh_default")
@pytest.mark.parametrize("call", [_by_call_sync, _by_function, _by_using, _by_protect, _by_retry])
def test_the_lean_sync_call_keeps_the_same_books_as_the_loop(call: Any) -> None:
    """Successes, a retry, a non-retried error, give-ups and a breaker trip: identical books."""
    lean, full = _pair()
    _same_books(lean, full, _script(lean, call), _script(full, call))


def test_a_sync_success_skips_the_loop_and_a_failure_reaches_it_once() -> None:
    """The thread's loop sees no lean success, and a failed first attempt once, already made."""
    sw = seawall.Seawall(_policy(), entrypoints=False)
    seen: list[object] = []
    run = seawall.sync.run

    def spy(sw: Any, spec: Any, first: Any = None) -> Any:
        seen.append(None if first is None else type(first.exc).__name__)
        return run(sw, spec, first)

    seawall.sync.run = spy  # type: ignore[assignment]
    try:
        up = _Upstream("ok", "ok", ConnectionError("reset"), "ok")
        for _ in range(3):
            assert sw.call_sync(up, 5, key="k") == 5
    finally:
        seawall.sync.run = run
    assert seen == ["ConnectionError"]  # even the first call, which creates the key's state
    assert up.calls == 4


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_an_interrupted_lean_sync_attempt_is_started_and_given_no_verdict(
    interrupt: type[BaseException],
) -> None:
    """An interrupt propagates at once, counted as a call started (as the loop counts it)."""
    lean, full = _pair()
    for sw in (lean, full):
        up = _Upstream("ok", interrupt())
        sw.call_sync(up, 1, key="up")
        with pytest.raises(interrupt):
            sw.call_sync(up, 1, key="up")
        assert up.calls == 2
        assert sw.call_sync(up, 1, key="up") == 1  # nothing held: the key goes on
    books = _books(lean, "up")
    assert books == _books(full, "up")
    assert (books["requests"], books["attempts"], books["successes"]) == (3, 2, 2)


def test_a_def_returning_a_coroutine_counts_the_same_on_the_lean_path() -> None:
    """A misuse found in the lean attempt: a TypeError, the call started, no verdict."""

    async def fetch() -> int:
        return 1

    lean, full = _pair()
    for sw in (lean, full):
        with pytest.raises(TypeError, match="returned coroutine, an awaitable"):
            sw.call_sync(lambda: fetch(), key="up")
    assert _books(lean, "up") == _books(full, "up")
    assert _books(lean, "up")["requests"] == 1


def test_threads_count_every_lean_sync_call_exactly() -> None:
    """8 threads started together, 200 lean calls each on one key: every one counted."""
    sw = seawall.Seawall(_policy(), entrypoints=False, clock=_Clock())
    threads, calls = 8, 200
    start = threading.Barrier(threads, timeout=30)
    errors: list[BaseException] = []

    def fn(x: int) -> int:
        return x

    def worker() -> None:
        try:
            start.wait()
            for i in range(calls):
                assert sw.call_sync(fn, i, key="shared") == i
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    assert not errors
    books = _books(sw, "shared")
    total = threads * calls
    assert (books["requests"], books["attempts"], books["successes"]) == (total, total, total)


def test_an_inbound_deadline_sends_a_sync_call_through_the_loop() -> None:
    """With a deadline the loop checks it before the first attempt: a passed one refuses."""
    clock = _Clock()
    sw = seawall.Seawall(_policy(), entrypoints=False, clock=clock)
    up = _Upstream()
    with deadline(0.0), pytest.raises(seawall.DeadlineExceededError):
        sw.call_sync(up, 1, key="k")
    assert up.calls == 0


def test_an_observer_registered_later_turns_the_lean_sync_call_off() -> None:
    sw = seawall.Seawall(_policy(), entrypoints=False)
    up = _Upstream()
    sw.call_sync(up, 1, key="k")
    observer = _Observer()
    sw.register(observer)
    sw.call_sync(up, 1, key="k")
    assert observer.kinds == ["attempt", "call"]


def test_call_sync_names_itself_in_its_option_errors() -> None:
    """The errors of ``sw.call_sync``'s options say ``call_sync``, and how to write it."""
    sw = seawall.Seawall(_policy(), entrypoints=False)

    def get(key: str) -> str:
        return key

    with pytest.raises(
        TypeError, match=r"sw\.call_sync\(\S*get, key=.*sw\.using\(key=\.\.\.\)\.call_sync"
    ):
        sw.call_sync(get, key="k")
    with pytest.raises(TypeError, match=r"sw\.call_sync\(key=5\): give the key as a string"):
        sw.call_sync(get, "x", key=5)  # type: ignore[arg-type]
    assert sw.using(key="k").call_sync(get, key="mine") == "mine"


def test_a_file_the_failed_lean_attempt_closed_is_not_given_again() -> None:
    """Whether the arguments can be given again is judged as they were before the lean
    attempt: a file it read and closed stops the retries (with the original error), as
    on the loop's path. Judged after the attempt, a closed file no longer counted as
    read as used, and the retry got it closed (a ValueError, not the call's error)."""
    lean, full = _pair()
    for sw in (lean, full):
        bodies: list[bytes] = []

        def upload(body: io.BytesIO, bodies: list[bytes] = bodies) -> None:
            with body:
                bodies.append(body.read())
            raise ConnectionError("reset after the body")

        with pytest.raises(ConnectionError) as caught:
            sw.call_sync(upload, io.BytesIO(b"body"), key="up")
        assert bodies == [b"body"]
        assert "cannot be given again" in caught.value.__notes__[-1]
    assert _books(lean, "up") == _books(full, "up")


def test_a_def_returning_a_generator_is_refused_the_same_on_the_lean_path() -> None:
    """A generator object returned by a ``def`` (not a generator function, refused when it
    is given): its code would run as it is iterated, after seawall had counted a success.
    A TypeError, the call started, no verdict, the generator closed, on both paths."""
    made: list[Iterator[int]] = []

    def rows() -> Iterator[int]:
        yield 1
        raise ConnectionResetError("reset as it is iterated")

    def fetch() -> Iterator[int]:
        made.append(rows())
        return made[-1]

    lean, full = _pair()
    for sw in (lean, full):
        with pytest.raises(TypeError, match=r"sw\.call_sync\(.*fetch\): it returned a generator"):
            sw.call_sync(fetch, key="up")
    assert _books(lean, "up") == _books(full, "up")
    books = _books(lean, "up")
    assert (books["requests"], books["successes"]) == (1, 0)
    assert all(inspect.getgeneratorstate(gen) == inspect.GEN_CLOSED for gen in made)


@pytest.mark.usefixtures("_fresh_default")
def test_the_decorators_name_themselves_when_a_def_returns_a_coroutine_or_a_generator() -> None:
    """The misuse of a decorated def named ``sw.call_sync``, which the user never wrote."""
    sw = seawall.Seawall(entrypoints=False)

    async def fetch() -> int:
        return 1

    def rows() -> Iterator[int]:
        yield 1

    @sw.protect
    def protected() -> Any:
        return fetch()

    @seawall.retry
    def retried() -> Any:
        return fetch()

    @sw.protect(key="rows")
    def protected_rows() -> Any:
        return rows()

    with pytest.raises(TypeError, match=r"^@sw\.protect on .*protected: it returned coroutine"):
        protected()
    with pytest.raises(TypeError, match=r"^@seawall\.retry on .*retried: it returned coroutine"):
        retried()
    with pytest.raises(TypeError, match=r"^@sw\.protect on .*protected_rows: it returned a gen"):
        protected_rows()
    with pytest.raises(TypeError, match=r"^sw\.call_sync\(.*: it returned coroutine"):
        sw.call_sync(lambda: fetch())
