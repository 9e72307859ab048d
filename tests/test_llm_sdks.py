"""The real openai and anthropic SDKs over aiohttp (httpx-aiohttp) with seawall's middleware."""

from __future__ import annotations

import anthropic
import openai
import pytest
from httpx_aiohttp.httpx2 import AiohttpTransport

import seawall
from seawall.fake_llm import FakeProvider, anthropic_error, openai_error, status

from ._helpers import Recorder


@pytest.fixture
async def fake():
    """A fake provider on 127.0.0.1 that streams slowly enough to measure."""
    async with FakeProvider(chunks=5, chunk_delay=0.05) as provider:
        yield provider


@pytest.fixture
async def sw_session():
    """A seawall for 127.0.0.1 as an LLM route, and an aiohttp session through it."""
    sw = seawall.Seawall(routes={"127.0.0.1": seawall.Policy.for_llm()}, entrypoints=False)
    async with sw.session() as session:
        yield sw, session


def openai_client(fake: FakeProvider, session: object) -> openai.AsyncOpenAI:
    http = openai.DefaultAioHttpClient(transport=AiohttpTransport(client=session))
    return openai.AsyncOpenAI(
        base_url=fake.url + "/v1", api_key="sk-test", max_retries=0, http_client=http
    )


def anthropic_client(fake: FakeProvider, session: object) -> anthropic.AsyncAnthropic:
    http = anthropic.DefaultAioHttpClient(transport=AiohttpTransport(client=session))
    return anthropic.AsyncAnthropic(
        base_url=fake.url, api_key="sk-ant-test", max_retries=0, http_client=http
    )


async def test_openai_never_sees_a_503(fake, sw_session) -> None:
    """A 503 then a 200 reaches the OpenAI SDK as a plain completion."""
    sw, session = sw_session
    fake.then(status(503))
    client = openai_client(fake, session)
    answer = await client.chat.completions.create(model="gpt-4o", messages=[])
    assert answer.choices[0].message.content == "Hello from the fake."
    assert fake.hits == 2
    assert sw.costs()["calls"] == 1


async def test_openai_never_sees_a_429_with_a_wait(fake, sw_session) -> None:
    """A rate-limit 429 with retry-after-ms is waited out for the SDK."""
    _, session = sw_session
    fake.then(openai_error(429, "rate_limit_exceeded", headers={"retry-after-ms": "50"}))
    client = openai_client(fake, session)
    answer = await client.chat.completions.create(model="gpt-4o", messages=[])
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 5
    assert fake.hits == 2


async def test_insufficient_quota_fails_at_once(fake, sw_session) -> None:
    """insufficient_quota reaches the SDK after one attempt, as its RateLimitError."""
    _, session = sw_session
    fake.then(openai_error(429, "insufficient_quota"))
    client = openai_client(fake, session)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=[])
    assert caught.value.code == "insufficient_quota"
    assert fake.hits == 1


async def test_openai_stream_delivers_the_first_chunk_promptly(fake, sw_session) -> None:
    """The SDK gets the first streamed chunk before the server sends the last; usage is priced."""
    sw, session = sw_session
    client = openai_client(fake, session)
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[], stream=True, stream_options={"include_usage": True}
    )
    chunks = []
    async for chunk in stream:
        if not chunks:
            assert fake.last_chunk_sent_at is None
        chunks.append(chunk)
    assert chunks[-1].usage is not None
    (key,) = sw.costs()["keys"].values()
    assert key["models"]["gpt-4o"]["output_tokens"] == 5


async def test_anthropic_messages_and_stream(fake, sw_session) -> None:
    """The Anthropic SDK works through seawall, a 529 is invisible and both calls are priced."""
    sw, session = sw_session
    fake.then(status(529))
    client = anthropic_client(fake, session)
    message = await client.messages.create(
        model="claude-3-5-sonnet-latest", max_tokens=10, messages=[]
    )
    assert message.content[0].text == "Hello from the fake."  # type: ignore[union-attr]
    async with client.messages.stream(
        model="claude-3-5-sonnet-latest", max_tokens=10, messages=[]
    ) as stream:
        first = None
        async for event in stream:
            first = first or event
            if first is event:
                assert fake.last_chunk_sent_at is None
    assert first is not None
    (key,) = sw.costs()["keys"].values()
    assert key["models"]["claude-3-5-sonnet-latest"]["calls"] == 2
    assert fake.hits == 3


# --- the SDKs' own errors, raised through sw.call ---------------------------------------


async def test_sdk_insufficient_quota_through_call_is_tried_once_and_escalated(fake) -> None:
    """call(policy=Policy.for_llm()): the SDK's RateLimitError reaches the LLM classifier."""
    recorder = Recorder()
    sw = seawall.Seawall(plugins=[recorder], entrypoints=False)
    fake.then(openai_error(429, "insufficient_quota"))
    client = openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="sk-test", max_retries=0)
    try:
        with pytest.raises(openai.RateLimitError):
            await sw.call(
                client.chat.completions.create,
                model="gpt-4o",
                messages=[],
                key="completions",
                policy=seawall.Policy.for_llm(),
            )
    finally:
        await client.close()
        await sw.aclose()
    assert fake.hits == 1
    assert [(i.category, i.key) for i in recorder.incidents] == [
        (seawall.Category.QUOTA_EXHAUSTED, "completions")
    ]
    assert [e.category for e in recorder.of("attempt")] == ["quota_exhausted"]


async def test_sdk_rate_limit_through_call_is_still_retried(fake) -> None:
    """An ordinary 429 (rate_limit_exceeded) raised by the SDK is retried, without incident."""
    recorder = Recorder()
    sw = seawall.Seawall(plugins=[recorder], entrypoints=False)
    fake.then(openai_error(429, "rate_limit_exceeded", headers={"retry-after-ms": "3000"}))
    client = openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="sk-test", max_retries=0)
    try:
        answer = await sw.call(
            client.chat.completions.create,
            model="gpt-4o",
            messages=[],
            key="completions",
            policy=seawall.Policy.for_llm(),
        )
    finally:
        await client.close()
        await sw.aclose()
    assert answer.choices[0].message.content == "Hello from the fake."
    assert fake.hits == 2
    assert recorder.incidents == []
    # The wait header, read from the SDK error's response (test mode skips the sleep).
    assert recorder.delays() == [(pytest.approx(3.0), "retry-after")]


async def test_anthropic_sdk_errors_through_call_on_an_llm_route(fake) -> None:
    """A key routed to Policy.for_llm(): rate_limit_error is retried, a bad key escalated once."""
    recorder = Recorder()
    sw = seawall.Seawall(
        routes={"claude": seawall.Policy.for_llm()}, plugins=[recorder], entrypoints=False
    )
    client = anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-ant-test", max_retries=0)
    create = client.messages.create
    try:
        fake.then(anthropic_error(429, "rate_limit_error"))
        message = await sw.call(
            create, model="claude-3-5-sonnet-latest", max_tokens=10, messages=[], key="claude"
        )
        assert message.content[0].text == "Hello from the fake."  # type: ignore[union-attr]
        assert fake.hits == 2
        fake.then(anthropic_error(401, "authentication_error"))
        with pytest.raises(anthropic.AuthenticationError):
            await sw.call(
                create, model="claude-3-5-sonnet-latest", max_tokens=10, messages=[], key="claude"
            )
    finally:
        await client.close()
        await sw.aclose()
    assert fake.hits == 3
    assert [i.category for i in recorder.incidents] == [seawall.Category.AUTHENTICATION]
    assert "authentication_error" in recorder.incidents[0].reason
