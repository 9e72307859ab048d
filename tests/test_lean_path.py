"""The aiohttp middleware's lean path: a first attempt made inline, with the same books as ``run``.

With no event observer and no custom classifier, a request to an idle key
makes its first attempt in the middleware itself (``Route.fast``); a
failure hands over to ``Seawall.run``. Each test drives a real upstream on
127.0.0.1 and checks what a user can see: answers, upstream calls,
``sw.health()``, exceptions.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

import seawall
from seawall import watchdog
from seawall.engine import origin_key

from ._helpers import Recorder
from .conftest import status
from .test_call_lean import _Observer, _policy

_TIMING = {"waited", "retry_after", "budget_balance", "cooldown", "last_failure"}


def _books(sw: seawall.Seawall) -> dict[str, Any]:
    """Every key's health without the fields that depend on timing."""
    (key,) = sw.health()["keys"].values()
    return {
        name: value
        for name, value in key.items()
        if name not in _TIMING and not name.endswith("latency")
    }


async def _script(sw: seawall.Seawall, upstream: Any, make_session: Any) -> list[object]:
    up, server = upstream
    up.hits = 0
    up.then(
        status(200),  # call 1: through run() (the key's state is created)
        status(200),  # call 2: a lean success
        status(503),  # call 3: retried once
        status(200),
        status(404),  # call 4: not retried
        *[status(503)] * 6,  # calls 5 and 6: given up after 3 attempts; the breaker opens
    )
    seen: list[object] = []
    async with make_session(sw) as session:
        for _ in range(7):
            try:
                async with session.get(server.make_url("/")) as resp:
                    seen.append(resp.status)
            except seawall.CircuitOpenError as exc:
                seen.append(type(exc).__name__)
    seen.append(up.hits)
    return seen


@pytest.mark.virtual_time
async def test_the_lean_path_keeps_the_same_books_as_run(upstream, make_session) -> None:
    """Successes, retries, give-ups and a breaker trip: identical with and without the lean path.

    On the loop's virtual clock: the breaker measures the request rate on its clock, and
    on real time a fast run's rate stretches the hold so that the last call waits for a
    probe (``held_total`` 1) where a slower run's does not.
    """
    _up, server = upstream
    clock = asyncio.get_running_loop().time
    lean = seawall.Seawall(_policy(), entrypoints=False, clock=clock)
    full = seawall.Seawall(_policy(), entrypoints=False, plugins=[_Observer()], clock=clock)
    assert lean.origin(URL(str(server.make_url("/")))).fast
    assert not full.origin(URL(str(server.make_url("/")))).fast

    seen_lean = await _script(lean, upstream, make_session)
    seen_full = await _script(full, upstream, make_session)

    assert seen_lean == [200, 200, 200, 404, 503, 503, "ClientCircuitOpenError", 11]
    assert seen_full == seen_lean
    assert _books(lean) == _books(full)
    books = _books(lean)
    assert (books["requests"], books["attempts"], books["retries"]) == (7, 11, 5)
    assert books["state"] == "open"


async def test_a_hung_first_attempt_times_out_and_is_retried(upstream, make_session) -> None:
    """The watchdog ends a hung lean attempt at its limit; run() retries it; nothing is watched."""
    up, server = upstream
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.wait_for(release.wait(), 10)
        return web.Response(text="late")

    up.then(hang)
    sw = seawall.Seawall(_policy(attempt=watchdog.MIN_LIMIT, deadline=None), entrypoints=False)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
            assert await resp.text() == "ok"
    finally:
        release.set()
    # Not early by more than a grain. How late is for the frozen-clock test in
    # test_watchdog.py: the "ok" above already shows the hang was cut and retried.
    assert loop.time() - started >= watchdog.MIN_LIMIT - watchdog.GRAIN - 0.01
    books = _books(sw)
    assert (books["attempts"], books["retries"], books["failures"]) == (2, 1, {})
    assert not watchdog.of(loop).deadlines


async def test_a_cancelled_lean_request_counts_nothing(upstream, make_session) -> None:
    """Cancelling the caller mid-attempt raises CancelledError: no failure, no retry, no watch."""
    up, server = upstream
    arrived, release = asyncio.Event(), asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await asyncio.wait_for(release.wait(), 10)
        return web.Response(text="late")

    up.default = hang
    sw = seawall.Seawall(_policy(), entrypoints=False)
    session = make_session(sw)

    async def fetch() -> None:
        async with session.get(server.make_url("/")) as resp:
            await resp.read()

    task = asyncio.ensure_future(fetch())
    await asyncio.wait_for(arrived.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    books = _books(sw)
    assert (books["requests"], books["attempts"], books["failures"]) == (1, 0, {})
    assert books["consecutive_failures"] == 0
    assert up.hits == 1
    assert not watchdog.of(asyncio.get_running_loop()).deadlines


async def test_registering_an_observer_later_turns_the_lean_path_off(
    upstream, make_session
) -> None:
    """Routes are worked out again when plugins change: the next request emits events."""
    _up, server = upstream
    sw = seawall.Seawall(_policy(), entrypoints=False)
    recorder = Recorder()
    async with make_session(sw) as session:
        async with session.get(server.make_url("/")) as resp:
            assert resp.status == 200
        assert sw.origin(URL(str(server.make_url("/")))).fast
        sw.register(recorder)
        async with session.get(server.make_url("/")) as resp:
            assert resp.status == 200
    assert [e.kind for e in recorder.events] == ["attempt", "call"]
    assert _books(sw)["requests"] == 2


async def test_an_inbound_deadline_shorter_than_the_attempt_limit_still_bounds_it(
    upstream, make_session
) -> None:
    """With 0.3 s left of an inbound deadline and a 30 s attempt limit, the call ends at 0.3 s."""
    up, server = upstream
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.wait_for(release.wait(), 10)
        return web.Response(text="late")

    up.default = hang
    sw = seawall.Seawall(_policy(), entrypoints=False)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with seawall.deadline(0.3), pytest.raises(seawall.DeadlineExceededError):
            async with make_session(sw) as session, session.get(server.make_url("/")):
                pass
    finally:
        release.set()
    # Not before the deadline; DeadlineExceededError (not the hang's "late"
    # answer after 10 s) shows the deadline, not the upstream, ended it.
    assert loop.time() - started >= 0.3 - 0.01


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://API.example.com/v1?x=1", ("https", "api.example.com")),
        ("http://127.0.0.1:8080/", ("http", "127.0.0.1:8080")),
        ("http://[::1]:80/", ("http", "[::1]:80")),
    ],
)
def test_routes_are_cached_by_scheme_and_netloc_read_from_yarls_fields(url, key) -> None:
    """The cache key comes from yarl's fields (fast) and matches its public properties.

    If a yarl release renames ``_scheme``/``_netloc``, the middleware still
    works (through ``Seawall.origin``) but this test says the lean path lost
    its cheap key.
    """
    parsed = URL(url)
    assert origin_key(parsed) == key == (parsed.scheme, parsed.raw_authority)
