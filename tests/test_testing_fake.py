"""``seawall.testing`` is the documented home of the fake LLM provider."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import aiohttp
import pytest

import seawall
import seawall.fake_llm
from seawall import testing


def test_the_fake_provider_names_are_served_by_seawall_testing() -> None:
    """The same objects as seawall.fake_llm's, which stays importable."""
    for name in ("FakeProvider", "openai_error", "anthropic_error", "status"):
        assert getattr(testing, name) is getattr(seawall.fake_llm, name)
        assert name in testing.__all__
    from seawall.testing import FakeProvider

    assert FakeProvider is seawall.fake_llm.FakeProvider


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match=r"'seawall\.testing' has no attribute 'Fake'"):
        _ = testing.Fake  # type: ignore[attr-defined]


def test_import_seawall_does_not_load_the_fake_or_aiohttp_web() -> None:
    """The fake is loaded on first use only (it needs aiohttp.web)."""
    code = (
        "import sys, seawall, seawall.testing\n"
        "print('seawall.testing.fake_llm' in sys.modules, 'aiohttp.web' in sys.modules)\n"
        "seawall.testing.FakeProvider\n"
        "print('seawall.testing.fake_llm' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=True
    )
    assert done.stdout.split() == ["False", "False", "True"]


async def test_the_fake_answers_through_seawall_after_a_scripted_error() -> None:
    """A scripted 503 is retried; the caller gets the fake's answer."""
    async with testing.FakeProvider() as fake:
        fake.then(testing.openai_error(503, "server_error"))
        sw = seawall.Seawall(routes={"127.0.0.1": seawall.Policy.for_llm()}, entrypoints=False)
        with testing.mode():
            async with (
                sw.session() as session,
                session.post(fake.url + "/v1/chat/completions", json={"model": "gpt-4o"}) as resp,
            ):
                answer = await resp.json()
        await sw.aclose()
    assert answer["choices"][0]["message"]["content"] == "Hello from the fake."
    assert fake.hits == 2


# --- hostile options (fifth audit) ----------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"rate": 0}, "rate=0"),
        ({"rate": float("nan")}, "rate=nan"),
        ({"rate": -5}, "rate=-5"),
        ({"burst": 0.5}, "burst=0.5"),
        ({"flavor": "Anthropic"}, "flavor='Anthropic'"),
        ({"chunks": -1}, "chunks=-1"),
        ({"latency": float("inf")}, "latency=inf"),
        ({"chunk_delay": -0.1}, "chunk_delay=-0.1"),
    ],
)
def test_options_that_would_break_every_answer_are_refused(
    options: dict[str, Any], named: str
) -> None:
    """rate=0 made every request a bare 500 (ZeroDivisionError); a flavor typo was ignored."""
    from seawall.testing import FakeProvider

    with pytest.raises(ValueError, match=re.escape(named)):
        FakeProvider(**options)


def test_then_refuses_what_is_not_an_answer() -> None:
    """fake.then("429") fails at once, not as a 500 on the scripted request."""
    from seawall.testing import FakeProvider

    with pytest.raises(TypeError, match=r"takes answers such as openai_error\(429"):
        FakeProvider().then("429")  # type: ignore[arg-type]


async def test_a_second_start_is_refused_and_close_stops_the_one_server() -> None:
    """start() twice left the first server listening after close(); now it is an error."""
    from seawall.testing import FakeProvider

    fake = FakeProvider()
    url = await fake.start()
    with pytest.raises(RuntimeError, match="already serving at"):
        await fake.start()
    await fake.close()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.post(url + "/v1/chat/completions", json={})


async def test_a_scripted_rate_limit_reaches_the_client_as_written() -> None:
    """The script's answer, status and body as the provider sends them."""
    from seawall.testing import FakeProvider, openai_error

    async with FakeProvider() as fake, aiohttp.ClientSession() as session:
        fake.then(openai_error(429, "rate_limit_exceeded"))
        async with session.post(fake.url + "/v1/chat/completions", json={}) as answer:
            assert answer.status == 429
            body = await answer.json()
    assert body["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize(
    ("path", "body", "shape"),
    [
        ("/v1/chat/completions", b"model=gpt-4o", "openai"),  # form-encoded: data= for json=
        ("/v1/responses", b"", "openai"),
        ("/v1/messages", b'["not", "an", "object"]', "anthropic"),
        ("/v1/messages", b"\xff\xfe{}", "anthropic"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_a_400_as_the_real_apis_answer(
    path: str, body: bytes, shape: str
) -> None:
    """Code that sends the wrong body learns it from the fake, not from production.

    The fake answered such a body as if it were ``{}`` (a 200 with a default model);
    the providers answer 400 ``invalid_request_error``, and count no request against
    the rate limit.
    """
    async with testing.FakeProvider(rate=1) as fake, aiohttp.ClientSession() as client:
        async with client.post(fake.url + path, data=body) as resp:
            answer = await resp.json()
            assert resp.status == 400
        error = answer["error"]
        assert error["type"] == "invalid_request_error"
        assert "not a JSON object" in error["message"]
        assert ("type" in answer) is (shape == "anthropic")
        # The bucket's one token is still there for a good request.
        async with client.post(fake.url + path, json={"model": "gpt-4o"}) as resp:
            assert resp.status == 200
    assert (fake.hits, fake.served, fake.rejected) == (2, 1, 0)


async def test_a_path_the_apis_do_not_serve_is_their_404_for_their_sdks() -> None:
    """A wrong ``base_url`` meets the providers' 404 in their shape, as in production (it
    was aiohttp's text "404: Not Found", which neither SDK reads as an error object)."""
    openai = pytest.importorskip("openai")
    anthropic = pytest.importorskip("anthropic")
    async with testing.FakeProvider() as fake:
        oa = openai.AsyncOpenAI(base_url=fake.url + "/v2", api_key="sk-test", max_retries=0)
        an = anthropic.AsyncAnthropic(base_url=fake.url + "/v2", api_key="sk-test", max_retries=0)
        try:
            with pytest.raises(openai.NotFoundError) as by_openai:
                await oa.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                )
            with pytest.raises(anthropic.NotFoundError) as by_anthropic:
                await an.messages.create(
                    model="claude-3-5-haiku-latest",
                    max_tokens=5,
                    messages=[{"role": "user", "content": "hi"}],
                )
        finally:
            await oa.close()
            await an.close()
        assert by_openai.value.type == "invalid_request_error"
        assert by_openai.value.body["message"] == "Invalid URL (POST /v2/chat/completions)"
        assert by_anthropic.value.body == {
            "type": "error",
            "error": {"type": "not_found_error", "message": "Not Found: /v2/v1/messages"},
        }
        assert fake.hits == 0  # not an endpoint: not counted
