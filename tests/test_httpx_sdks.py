"""What every SDK client over seawall's httpx transports sees, the same for each: the
OpenAI SDK over httpx and over httpx2 (it takes either), the Anthropic SDK over httpx2;
their async clients, and their sync clients in a thread while the event loop serves;
against the fake provider on 127.0.0.1. Streams and what is particular to one SDK:
tests/test_httpx.py, test_httpx_sync.py, test_httpx2.py."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

import seawall
from seawall.fake_llm import FakeProvider, status

SDKS = ["openai", "openai-httpx2", "anthropic"]
DIRECTIONS = pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])


def _openai(
    sw: seawall.Seawall, url: str, sync: bool, max_retries: int, mod: ModuleType = httpx
) -> Any:
    """The OpenAI SDK takes an httpx client or an httpx2 one (``mod``)."""
    options: dict[str, Any] = {"base_url": url + "/v1", "api_key": "sk-test"}
    package: Any = mod.__name__
    if sync:
        http = mod.Client(transport=sw.httpx_transport(sync=True, package=package))
        return openai.OpenAI(**options, max_retries=max_retries, http_client=http)
    http_async = mod.AsyncClient(transport=sw.httpx_transport(package=package))
    return openai.AsyncOpenAI(**options, max_retries=max_retries, http_client=http_async)


def _anthropic(sw: seawall.Seawall, url: str, sync: bool, max_retries: int) -> Any:
    options: dict[str, Any] = {"base_url": url, "api_key": "sk-ant-test"}
    if sync:
        http = httpx2.Client(transport=sw.httpx_transport(sync=True, package="httpx2"))
        return anthropic.Anthropic(**options, max_retries=max_retries, http_client=http)
    http_async = httpx2.AsyncClient(transport=sw.httpx_transport(package="httpx2"))
    return anthropic.AsyncAnthropic(**options, max_retries=max_retries, http_client=http_async)


#: Per SDK: its client over seawall's transport, one call, and its module (its errors).
CLIENTS: dict[str, tuple[Callable[..., Any], Callable[[Any], Any], ModuleType]] = {
    "openai": (_openai, lambda c: c.chat.completions.create(model="gpt-4o", messages=[]), openai),
    "openai-httpx2": (
        functools.partial(_openai, mod=httpx2),
        lambda c: c.chat.completions.create(model="gpt-4o", messages=[]),
        openai,
    ),
    "anthropic": (
        _anthropic,
        lambda c: c.messages.create(model="claude-3-5-sonnet-latest", max_tokens=10, messages=[]),
        anthropic,
    ),
}


async def calls(
    sdk: str, sync: bool, sw: seawall.Seawall, fake: FakeProvider, count: int, max_retries: int = 0
) -> list[Any]:
    """``count`` calls through one client: each one's answer, or the SDK error it raised."""
    make, ask, module = CLIENTS[sdk]
    seen: list[Any] = []
    if sync:

        def in_thread() -> None:
            with make(sw, fake.url, True, max_retries) as client:
                for _ in range(count):
                    try:
                        seen.append(ask(client))
                    except module.APIError as exc:
                        seen.append(exc)

        await asyncio.to_thread(in_thread)
        return seen
    async with make(sw, fake.url, False, max_retries) as client:
        for _ in range(count):
            try:
                seen.append(await ask(client))
            except module.APIError as exc:
                seen.append(exc)
    return seen


def llm_seawall(**overrides: Any) -> seawall.Seawall:
    return seawall.Seawall(
        routes={"127.0.0.1": seawall.Policy.for_llm(**overrides)}, entrypoints=False
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(chunks=3) as provider:
        yield provider


@pytest.mark.parametrize("sdk", SDKS)
@DIRECTIONS
async def test_the_sdk_never_sees_a_503_and_the_answer_is_priced(
    fake: FakeProvider, sdk: str, sync: bool
) -> None:
    sw = llm_seawall()
    fake.then(status(503))
    (answer,) = await calls(sdk, sync, sw, fake, 1)
    assert "Hello from the fake." in answer.model_dump_json()
    assert fake.hits == 2
    assert sw.costs()["calls"] == 1


@pytest.mark.parametrize("sdk", SDKS)
@DIRECTIONS
async def test_an_open_breaker_reaches_the_sdk_as_a_connection_error(
    fake: FakeProvider, sdk: str, sync: bool
) -> None:
    """Not a timeout: the SDK's APIConnectionError, with seawall's CircuitOpenError inside."""
    sw = llm_seawall(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(failure_threshold=1, minimum_calls=1, window=1),
    )
    fake.then(status(500))
    server_error, refused = await calls(sdk, sync, sw, fake, 2)
    module = CLIENTS[sdk][2]
    assert isinstance(server_error, module.InternalServerError)
    assert isinstance(refused, module.APIConnectionError)
    assert not isinstance(refused, module.APITimeoutError)
    assert isinstance(seawall.unwrap(refused), seawall.CircuitOpenError)
    assert fake.hits == 1


@pytest.mark.parametrize("sdk", SDKS)
@DIRECTIONS
async def test_sdk_retries_on_top_are_warned_about_once(
    fake: FakeProvider, caplog: pytest.LogCaptureFixture, sdk: str, sync: bool
) -> None:
    """A client left with max_retries > 0 re-sends what seawall gave up on: one warning."""
    sw = llm_seawall(
        retry=seawall.RetryPolicy(max_attempts=1), breaker=seawall.BreakerPolicy(enabled=False)
    )
    for _ in range(6):
        fake.then(status(500, headers={"retry-after-ms": "1"}))
    caplog.set_level(logging.WARNING, logger="seawall.httpx")
    failed = await calls(sdk, sync, sw, fake, 2, max_retries=2)
    assert [type(e) for e in failed] == [CLIENTS[sdk][2].InternalServerError] * 2
    warnings = [r for r in caplog.records if "max_retries=0" in r.getMessage()]
    assert len(warnings) == 1
    assert fake.hits == 6
