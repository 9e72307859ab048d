"""The httpx2 transports (``seawall.httpx2``) and the real Anthropic SDK over them, async
and sync, against the fake provider on 127.0.0.1. The sync clients run in a thread while
the event loop serves."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anthropic
import httpx
import httpx2
import pytest
from aiohttp import web

import seawall
import seawall.httpx
import seawall.httpx2
from seawall.fake_llm import FakeProvider, status
from seawall.httpx2 import Httpx2CircuitOpenError, Httpx2DeadlineExceededError
from seawall.outcome import Category
from seawall.plugins.builtin.exceptions import classify_exception

T = TypeVar("T")
MODEL = "claude-3-5-sonnet-latest"


async def in_thread(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def llm_seawall(**overrides: Any) -> seawall.Seawall:
    return seawall.Seawall(
        routes={"127.0.0.1": seawall.Policy.for_llm(**overrides)}, entrypoints=False
    )


def async_client(
    sw: seawall.Seawall, fake: FakeProvider, max_retries: int = 0
) -> anthropic.AsyncAnthropic:
    http = httpx2.AsyncClient(transport=sw.httpx_transport(package="httpx2"))
    return anthropic.AsyncAnthropic(
        base_url=fake.url, api_key="sk-ant-test", max_retries=max_retries, http_client=http
    )


def sync_client(
    sw: seawall.Seawall, fake: FakeProvider, max_retries: int = 0
) -> anthropic.Anthropic:
    http = httpx2.Client(transport=sw.httpx_transport(sync=True, package="httpx2"))
    return anthropic.Anthropic(
        base_url=fake.url, api_key="sk-ant-test", max_retries=max_retries, http_client=http
    )


class HeldStream(FakeProvider):
    """Sends a stream's first event, then holds the rest until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__(chunks=3)
        self.release = threading.Event()
        self.finished = False

    async def _stream(
        self, request: web.Request, lines: list[str], headers: dict[str, str]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **headers})
        await response.prepare(request)
        await response.write(lines[0].encode())
        await asyncio.to_thread(self.release.wait, 30)  # bounded: a held-back client fails
        for line in lines[1:]:
            await response.write(line.encode())
        self.finished = True
        await response.write_eof()
        return response


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(chunks=3) as provider:
        yield provider


@pytest.fixture
async def held() -> AsyncIterator[HeldStream]:
    async with HeldStream() as provider:
        yield provider


# --- choosing the transport ------------------------------------------------------------


def test_the_package_and_direction_come_from_the_wrapped_transport() -> None:
    sw = seawall.Seawall(entrypoints=False)
    made = [
        sw.httpx_transport(package="httpx2"),
        sw.httpx_transport(sync=True, package="httpx2"),
        sw.httpx_transport(httpx2.AsyncHTTPTransport()),
        sw.httpx_transport(httpx2.HTTPTransport(), sync=True),
        sw.httpx_transport(httpx.AsyncHTTPTransport()),
        sw.httpx_transport(httpx.HTTPTransport(), sync=True),
    ]
    assert [type(t) for t in made] == [
        seawall.httpx2.AsyncTransport,
        seawall.httpx2.SyncTransport,
        seawall.httpx2.AsyncTransport,
        seawall.httpx2.SyncTransport,
        seawall.httpx.AsyncTransport,
        seawall.httpx.SyncTransport,
    ]
    assert isinstance(made[0], httpx2.AsyncBaseTransport)
    assert isinstance(made[1], httpx2.BaseTransport)
    assert isinstance(made[1].transport, httpx2.HTTPTransport)
    for transport in made:
        if isinstance(transport, seawall.httpx.SyncTransport | seawall.httpx2.SyncTransport):
            transport.close()


def test_a_transport_that_contradicts_the_arguments_is_refused() -> None:
    sw = seawall.Seawall(entrypoints=False)
    with pytest.raises(ValueError, match="sync httpx2 transport; drop sync=False"):
        sw.httpx_transport(httpx2.HTTPTransport(), sync=False)
    with pytest.raises(ValueError, match="async httpx transport; drop package='httpx2'"):
        sw.httpx_transport(httpx.AsyncHTTPTransport(), package="httpx2")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="use package='httpx' or package='httpx2'"):
        sw.httpx_transport(package="requests")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="not an httpx or httpx2 transport"):
        sw.httpx_transport(object())  # type: ignore[call-overload]


def test_seawall_imports_httpx2_only_for_its_transport() -> None:
    """``import seawall`` and the httpx transport leave httpx2 unimported."""
    code = (
        "import sys, seawall\n"
        "sw = seawall.Seawall(entrypoints=False)\n"
        "assert 'httpx' not in sys.modules and 'httpx2' not in sys.modules\n"
        "sw.httpx_transport()\n"
        "assert 'httpx2' not in sys.modules\n"
        "sw.httpx_transport(package='httpx2')\n"
        "assert 'httpx2' in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr


def test_httpx2_errors_are_classified_and_twinned() -> None:
    request = httpx2.Request("GET", "http://127.0.0.1/")
    refused = httpx2.ConnectError("refused", request=request)
    assert classify_exception(refused).category is Category.NETWORK
    assert classify_exception(refused).retryable
    assert classify_exception(httpx2.ReadTimeout("t", request=request)).category is Category.TIMEOUT
    assert not classify_exception(httpx2.UnsupportedProtocol("ftp", request=request)).retryable
    assert issubclass(Httpx2CircuitOpenError, httpx2.TransportError)
    assert not issubclass(Httpx2CircuitOpenError, httpx.TransportError)
    assert issubclass(Httpx2DeadlineExceededError, httpx2.TimeoutException)
    assert issubclass(Httpx2DeadlineExceededError, seawall.DeadlineExceededError)


# --- the async Anthropic client ----------------------------------------------------------


async def test_anthropic_never_sees_a_529_or_a_503_and_both_calls_are_priced(
    fake: FakeProvider,
) -> None:
    sw = llm_seawall()
    fake.then(status(529), status(503))
    async with async_client(sw, fake) as client:
        message = await client.messages.create(model=MODEL, max_tokens=10, messages=[])
        async with client.messages.stream(model=MODEL, max_tokens=10, messages=[]) as stream:
            text = "".join([chunk async for chunk in stream.text_stream])
    assert message.content[0].text == "Hello from the fake."  # type: ignore[union-attr]
    assert text == "chunk0 chunk1 chunk2 "
    assert fake.hits == 4
    (key,) = sw.costs()["keys"].values()
    assert key["models"][MODEL]["calls"] == 2
    assert key["models"][MODEL]["output_tokens"] == 10
    (detail,) = sw.health()["keys"].values()
    assert detail["retries"] == 2


async def test_anthropic_stream_is_handed_on_as_it_comes(held: HeldStream) -> None:
    """The first event reaches the SDK while the server still holds the rest back."""
    sw = llm_seawall()
    async with (
        async_client(sw, held) as client,
        client.messages.stream(model=MODEL, max_tokens=10, messages=[]) as stream,
    ):
        events = []
        async for event in stream:
            if not events:
                assert not held.finished
                held.release.set()
            events.append(event.type)
    assert events[0] == "message_start"
    assert events[-1] == "message_stop"
    (key,) = sw.costs()["keys"].values()
    assert key["models"][MODEL]["output_tokens"] == 5


# --- the sync Anthropic client, in a thread ----------------------------------------------


async def test_sync_anthropic_never_sees_a_529_or_a_503_and_both_calls_are_priced(
    fake: FakeProvider,
) -> None:
    sw = llm_seawall()
    fake.then(status(529), status(503))

    def use() -> tuple[str, str]:
        with sync_client(sw, fake) as client:
            message = client.messages.create(model=MODEL, max_tokens=10, messages=[])
            with client.messages.stream(model=MODEL, max_tokens=10, messages=[]) as stream:
                text = "".join(stream.text_stream)
        return message.content[0].text, text  # type: ignore[union-attr]

    assert await in_thread(use) == ("Hello from the fake.", "chunk0 chunk1 chunk2 ")
    assert fake.hits == 4
    (key,) = sw.costs()["keys"].values()
    assert key["models"][MODEL]["calls"] == 2
    assert key["models"][MODEL]["output_tokens"] == 10


async def test_sync_anthropic_stream_is_handed_on_as_it_comes(held: HeldStream) -> None:
    sw = llm_seawall()

    def use() -> list[str]:
        events: list[str] = []
        with (
            sync_client(sw, held) as client,
            client.messages.stream(model=MODEL, max_tokens=10, messages=[]) as stream,
        ):
            for event in stream:
                if not events:
                    assert not held.finished
                    held.release.set()
                events.append(event.type)
        return events

    events = await in_thread(use)
    assert (events[0], events[-1]) == ("message_start", "message_stop")
    (key,) = sw.costs()["keys"].values()
    assert key["models"][MODEL]["output_tokens"] == 5
