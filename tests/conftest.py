"""Shared fixtures: test mode on, and small aiohttp upstreams on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import settings

import seawall

from ._virtual_time import VirtualTimeLoop

# `make test` gives the same verdict on every run: the property tests draw the same
# examples each time (a seed from each test's own source). `make fuzz` explores new
# ones on every run; a case it finds becomes a plain test (see tests/README.md).
settings.register_profile("suite", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("SEAWALL_HYPOTHESIS", "suite"))

pytest_plugins = ["aiohttp.pytest_plugin"]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]] | None:
    """``@pytest.mark.virtual_time`` tests (and their async fixtures) run on a loop whose
    clock moves only while it is idle: a timer cannot fire while a request is still on
    its way, however loaded the machine (``tests/_virtual_time.py``).

    ``SEAWALL_TEST_LOOP=uvloop`` runs the others on uvloop (``make test`` does so for
    the loop-sensitive files, ``UVLOOP_TESTS`` in the Makefile), but for
    ``@pytest.mark.stock_loop`` tests, which are about asyncio's own loop."""
    if item.get_closest_marker("virtual_time") is None:
        if os.environ.get("SEAWALL_TEST_LOOP") == "uvloop" and not item.get_closest_marker(
            "stock_loop"
        ):
            return {"uvloop": _uvloop}
        return {"asyncio": asyncio.new_event_loop}  # what pytest-asyncio makes by default
    return {"virtual": VirtualTimeLoop}


def _uvloop() -> asyncio.AbstractEventLoop:
    """A uvloop loop whose ``close`` does not raise its "unclosed resource" warnings.

    Under ``filterwarnings = error`` the warning uvloop (0.23) gives while closing a
    loop that still holds a handle became an exception inside its ``close``, which
    then never returned (a test whose upstream answered after its client had gone
    hung at teardown; with the warning ignored the same test ends at once). A
    warning about a test's own resources is still raised where it is made.
    """
    import uvloop

    class Loop(uvloop.Loop):
        def close(self) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                super().close()

    return Loop()


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    """Every backoff and Retry-After wait is instant; decisions are unchanged."""
    seawall.testing.set_testing(True)
    yield
    seawall.testing.set_testing(False)


class Upstream:
    """A scripted upstream: answers from ``script`` in turn, then ``default``; counts hits."""

    def __init__(self) -> None:
        self.hits = 0
        self.script: list[Callable[[web.Request], Awaitable[web.StreamResponse]]] = []
        self.default: Callable[[web.Request], Awaitable[web.StreamResponse]] = _ok
        self.requests: list[web.Request] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        self.requests.append(request)
        if self.script:
            return await self.script.pop(0)(request)
        return await self.default(request)

    def then(self, *responses: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        self.script.extend(responses)


async def _ok(_request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


def status(
    code: int, body: str = "", **headers: str
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler answering ``code`` with ``body`` and ``headers``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(status=code, text=body or f"status {code}", headers=headers)

    return handler


@pytest.fixture
async def upstream(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> AsyncIterator[tuple[Upstream, TestServer]]:
    """An upstream on 127.0.0.1 answering every path and method from its script."""
    up = Upstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", up.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    return up, server


@pytest.fixture
async def make_session() -> AsyncIterator[Callable[..., aiohttp.ClientSession]]:
    """Sessions with a seawall middleware; any left open are closed at the end."""
    sessions: list[aiohttp.ClientSession] = []

    def make(sw: seawall.Seawall, **kwargs: object) -> aiohttp.ClientSession:
        session = sw.session(**kwargs)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        await session.close()
