"""The sync httpx transports' lean first attempt: the same books as the thread's loop.

On an idle key (closed breaker, no ramp, no cooldown, no deadline) whose route
allows it (no event observer, no custom classifier, not an LLM route),
``SyncTransport`` makes the first attempt itself; a failure goes on to the
loop as its first attempt. Each test runs a script against a real upstream on
127.0.0.1, from a thread, and compares what a user sees with a seawall whose
observer plugin turns the lean path off. The clock is injected, so the retry
budget is exact on both sides.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import httpx2
import pytest
from aiohttp.test_utils import TestServer

import seawall
import seawall.sync

from ._servers import closed_port
from .conftest import Upstream, status


class _Observer:
    """Implements ``seawall_event``: its presence alone sends every request through the loop."""

    @seawall.hookimpl
    def seawall_event(self, event: Any) -> None:
        pass


class _Clock:
    """A clock that moves 1 ms per reading (under a lock: threads read it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += 0.001
            return self.now


def _policy() -> seawall.Policy:
    return seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=3),
        breaker=seawall.BreakerPolicy(failure_threshold=2, minimum_calls=100),
    )


#: Fields that depend on how often the clock is read, or on jitter.
_TIMING = {"waited", "retry_after", "cooldown", "last_failure"}


def _books(sw: seawall.Seawall) -> dict[str, Any]:
    (books,) = sw.health()["keys"].values()
    return {
        name: value
        for name, value in books.items()
        if name not in _TIMING and not name.endswith("latency")
    }


def _client(sw: seawall.Seawall, package: str) -> httpx.Client | httpx2.Client:
    if package == "httpx2":
        return httpx2.Client(transport=sw.httpx_transport(sync=True, package="httpx2"))
    return httpx.Client(transport=sw.httpx_transport(sync=True))


def _requests(sw: seawall.Seawall, url: str, count: int, package: str = "httpx") -> list[object]:
    """``count`` GETs, one at a time: each one's status, or the seawall error's name."""
    seen: list[object] = []
    with _client(sw, package) as http:
        for _ in range(count):
            try:
                seen.append(http.get(url).status_code)
            except (httpx.TransportError, httpx2.TransportError) as exc:
                # the seawall error the httpx (httpx2) twin stands for
                twin = type(seawall.unwrap(exc))
                seen.append(
                    next(c for c in twin.__mro__ if c.__module__ == "seawall.errors").__name__
                )
    return seen


def _script(up: Upstream) -> None:
    up.hits = 0
    up.then(
        status(200),  # request 1: the key's state is made (through the loop)
        status(200),  # request 2: a lean success
        status(503),  # request 3: retried once
        status(200),
        status(500),  # request 4: retried once
        status(200),
        status(404),  # request 5: not retried
        *[status(503)] * 6,  # requests 6 and 7: given up after 3 attempts; the breaker opens
    )


@pytest.mark.parametrize("package", ["httpx", "httpx2"])
async def test_the_lean_request_keeps_the_same_books_as_the_loop(
    upstream: tuple[Upstream, TestServer], package: str
) -> None:
    """Successes, retries, a 404, give-ups and a breaker trip: identical books."""
    up, server = upstream
    url = str(server.make_url("/a"))
    lean = seawall.Seawall(_policy(), entrypoints=False, clock=_Clock())
    full = seawall.Seawall(_policy(), entrypoints=False, clock=_Clock(), plugins=[_Observer()])
    seen: dict[str, list[object]] = {}
    hits: dict[str, int] = {}
    for name, sw in (("lean", lean), ("full", full)):
        _script(up)
        seen[name] = await asyncio.to_thread(_requests, sw, url, 9, package)
        hits[name] = up.hits
    (route,) = {r for r in lean.registry.cache.values() if r.key.startswith("http://")}
    assert route.fast
    assert not next(iter(full.registry.cache.values())).fast
    expected = [200, 200, 200, 200, 404, 503, 503, "CircuitOpenError", "CircuitOpenError"]
    assert seen["lean"] == expected
    assert seen["full"] == expected
    assert hits["lean"] == hits["full"] == 13  # no attempt made twice
    books = _books(lean)
    assert books == _books(full)  # budget balance and breaker included
    assert (books["requests"], books["attempts"], books["retries"]) == (9, 13, 6)
    assert books["state"] == "open"


async def test_a_success_skips_the_loop_and_a_failure_reaches_it_once(
    upstream: tuple[Upstream, TestServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop sees the first request (it makes the key's state), no lean success, and a
    failed first attempt once, already made."""
    up, server = upstream
    up.then(status(200), status(200), status(503), status(200))
    sw = seawall.Seawall(_policy(), entrypoints=False)
    firsts: list[object] = []
    run = seawall.sync.run

    def spy(sw: seawall.Seawall, spec: Any, first: Any = None) -> Any:
        firsts.append(None if first is None else first.result.status)
        return run(sw, spec, first)

    monkeypatch.setattr(seawall.sync, "run", spy)
    seen = await asyncio.to_thread(_requests, sw, str(server.make_url("/")), 3)
    assert seen == [200, 200, 200]
    assert firsts == [None, 503]
    assert up.hits == 4
    assert _books(sw)["retries"] == 1


async def test_what_needs_the_loop_turns_the_lean_path_off(
    upstream: tuple[Upstream, TestServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ramp after a recovery, a cooldown and an inbound deadline: the loop serves them."""
    _, server = upstream
    url = str(server.make_url("/"))
    clock = _Clock()
    sw = seawall.Seawall(_policy(), entrypoints=False, clock=clock)
    await asyncio.to_thread(_requests, sw, url, 1)  # the key's state
    (state,) = sw.registry.view.values()
    through_loop: list[bool] = []
    run = seawall.sync.run

    def spy(sw: seawall.Seawall, spec: Any, first: Any = None) -> Any:
        through_loop.append(first is None)
        return run(sw, spec, first)

    monkeypatch.setattr(seawall.sync, "run", spy)

    def one() -> list[object]:
        return _requests(sw, url, 1)

    state.breaker.ramp_until = clock.now + 60.0
    assert await asyncio.to_thread(one) == [200]
    # a ramp whose end a stalled loop let pass: only the loop's turn() may end it
    state.breaker.ramp_until = clock.now - 1.0
    assert await asyncio.to_thread(one) == [200]
    state.breaker.ramp_until = 0.0
    state.cooldown.until = clock.now + 60.0  # test mode skips the wait, not the decision
    assert await asyncio.to_thread(one) == [200]
    state.cooldown.until = 0.0

    def with_deadline() -> list[object]:
        with seawall.deadline(60.0):
            return one()

    assert await asyncio.to_thread(with_deadline) == [200]
    assert through_loop == [True, True, True, True]
    assert await asyncio.to_thread(one) == [200]  # idle again: lean
    assert through_loop == [True, True, True, True]


async def test_threads_count_every_lean_request(upstream: tuple[Upstream, TestServer]) -> None:
    """Four threads on one key, 20 requests each: every request and success is counted."""
    up, server = upstream
    sw = seawall.Seawall(_policy(), entrypoints=False)
    url = str(server.make_url("/"))
    results = await asyncio.gather(*[asyncio.to_thread(_requests, sw, url, 20) for _ in range(4)])
    assert [len(r) for r in results] == [20] * 4
    assert up.hits == 80
    books = _books(sw)
    assert (books["requests"], books["attempts"], books["successes"]) == (80, 80, 80)


async def test_a_refused_lean_first_attempt_is_retried_by_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection error on the lean path reaches the loop as the first of its attempts."""
    sw = seawall.Seawall(_policy(), entrypoints=False)
    firsts: list[object] = []
    run = seawall.sync.run

    def spy(sw: seawall.Seawall, spec: Any, first: Any = None) -> Any:
        firsts.append(None if first is None else type(first.exc).__name__)
        return run(sw, spec, first)

    monkeypatch.setattr(seawall.sync, "run", spy)
    url = f"http://127.0.0.1:{closed_port()}/"
    seen = await asyncio.to_thread(_requests, sw, url, 2)
    assert seen == ["RetriesExhaustedError"] * 2
    assert firsts == [None, "ConnectError"]
    books = _books(sw)
    assert (books["requests"], books["attempts"], books["retries"]) == (2, 6, 4)


class _Interrupting(httpx.HTTPTransport):
    """httpx's own transport to the real upstream, until told to raise ``KeyboardInterrupt``."""

    interrupt = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.interrupt:
            raise KeyboardInterrupt
        return super().handle_request(request)


def _interrupted(sw: seawall.Seawall, url: str) -> None:
    inner = _Interrupting()
    with httpx.Client(transport=sw.httpx_transport(inner, sync=True)) as http:
        assert http.get(url).status_code == 200  # through the loop: the key's state is made
        assert http.get(url).status_code == 200  # lean
        inner.interrupt = True
        with pytest.raises(KeyboardInterrupt):
            http.get(url)


async def test_an_interrupted_lean_attempt_is_counted_as_started_and_not_retried(
    upstream: tuple[Upstream, TestServer],
) -> None:
    """The lean path counts a request when its attempt ends; one that never ends (Ctrl-C
    inside the attempt) is still counted as started, and nothing retries or books it."""
    up, server = upstream
    sw = seawall.Seawall(_policy(), entrypoints=False)
    await asyncio.to_thread(_interrupted, sw, str(server.make_url("/")))
    assert up.hits == 2  # the interrupted attempt never reached the upstream, nor a retry
    books = _books(sw)
    assert (books["requests"], books["attempts"], books["successes"]) == (3, 2, 2)
    assert books["failures"] == {}
    (route,) = {r for r in sw.registry.cache.values() if r.key.startswith("http://")}
    assert route.fast  # the lean path was the one interrupted
