"""``seawall.testing`` is the documented home of the fake LLM provider."""

from __future__ import annotations

import subprocess
import sys

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
