"""The built-in LLM plugin: provider error bodies, wait headers, routes it applies to."""

from __future__ import annotations

from typing import ClassVar

import pytest

import seawall
from seawall.fake_llm import FakeProvider, anthropic_error, openai_error, status
from seawall.llm import model_from_json, parse_duration, parse_timestamp, rate_info, reset_wait
from seawall.outcome import Category, Outcome
from seawall.plugins.builtin.llm import OVERLOADED_BASE_DELAY, classify_error

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


@pytest.fixture
async def fake():
    """A fake provider on 127.0.0.1."""
    async with FakeProvider() as provider:
        yield provider


def llm_seawall(**overrides: object) -> seawall.Seawall:
    return seawall.Seawall(
        routes={"127.0.0.1": seawall.Policy.for_llm(**overrides)}, entrypoints=False
    )


class Incidents:
    def __init__(self) -> None:
        self.seen: list[seawall.Incident] = []

    @seawall.hookimpl
    def seawall_escalate(self, incident: seawall.Incident) -> None:
        self.seen.append(incident)


async def post(sw: seawall.Seawall, url: str, **body: object) -> tuple[int, bytes]:
    async with sw.session() as session:
        payload = {"model": "gpt-4o", "messages": [], **body}
        async with session.post(url, json=payload) as resp:
            return resp.status, await resp.read()


async def test_insufficient_quota_is_not_retried_and_escalates(fake) -> None:
    """OpenAI's insufficient_quota 429 is QUOTA_EXHAUSTED: one attempt, escalated."""
    fake.then(openai_error(429, "insufficient_quota", headers={"retry-after": "1"}))
    sink = Incidents()
    sw = llm_seawall()
    sw.register(sink)
    code, body = await post(sw, fake.url + CHAT)
    await sw.aclose()
    assert code == 429
    assert b"insufficient_quota" in body
    assert fake.hits == 1
    assert [i.category for i in sink.seen] == [Category.QUOTA_EXHAUSTED]
    assert sink.seen[0].severity >= seawall.Severity.HIGH


async def test_rate_limit_exceeded_is_retried(fake) -> None:
    """OpenAI's rate_limit_exceeded 429 is retried and the caller sees the 200."""
    fake.then(
        openai_error(429, "rate_limit_exceeded", headers={"x-ratelimit-reset-requests": "20ms"})
    )
    code, _ = await post(llm_seawall(), fake.url + CHAT)
    assert code == 200
    assert fake.hits == 2


@pytest.mark.parametrize(
    ("answer", "hits"),
    [
        (openai_error(400, "context_length_exceeded"), 1),
        (openai_error(400, "invalid_request_error"), 1),
        (openai_error(500, "server_error"), 2),
        (anthropic_error(400, "invalid_request_error"), 1),
        (anthropic_error(529, "overloaded_error"), 2),
        (anthropic_error(429, "rate_limit_error"), 2),
    ],
)
async def test_provider_errors_are_retried_or_not(fake, answer, hits) -> None:
    """Each provider error code is retried only when trying again can work."""
    fake.then(answer)
    await post(llm_seawall(), fake.url + MESSAGES)
    assert fake.hits == hits


@pytest.mark.parametrize("kind", ["authentication_error", "permission_error"])
async def test_anthropic_auth_errors_escalate(fake, kind) -> None:
    """Anthropic authentication and permission errors are not retried and are escalated."""
    fake.then(anthropic_error(401 if kind.startswith("auth") else 403, kind))
    sink = Incidents()
    sw = llm_seawall()
    sw.register(sink)
    await post(sw, fake.url + MESSAGES)
    await sw.aclose()
    assert fake.hits == 1
    assert len(sink.seen) == 1


async def test_non_llm_route_defers_to_the_http_classifier(fake) -> None:
    """On a plain route the body is not read as a provider's: a 429 is just retried."""
    fake.then(openai_error(429, "insufficient_quota"))
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(retry_methods=["POST"])), entrypoints=False
    )
    code, _ = await post(sw, fake.url + CHAT)
    assert code == 200
    assert fake.hits == 2


async def test_overloaded_backs_off_longer(fake) -> None:
    """After a 529 the delay is at least half the overloaded base delay."""
    fake.then(status(529))
    delays: list[float] = []

    class Watch:
        @seawall.hookimpl
        def seawall_event(self, event: object) -> None:
            if getattr(event, "kind", "") == "retry":
                delays.append(event.delay)  # type: ignore[attr-defined]

    sw = llm_seawall()
    sw.register(Watch())
    await post(sw, fake.url + MESSAGES)
    assert fake.hits == 2
    assert delays
    assert delays[0] >= OVERLOADED_BASE_DELAY / 2


def test_well_known_hosts_are_llm_routes_by_default() -> None:
    """api.openai.com is treated as an LLM route without any policy."""
    sw = seawall.Seawall(entrypoints=False)
    plugin = sw.plugin_manager.get_plugin("seawall.builtin.llm")
    from yarl import URL

    assert plugin.is_llm(Outcome(key="k", url=URL("https://api.openai.com/v1/chat/completions")))
    assert not plugin.is_llm(Outcome(key="k", url=URL("https://example.com/v1/chat/completions")))


def test_sdk_exceptions_are_classified_on_llm_keys() -> None:
    """An SDK error carrying status_code and body is read like a response (sw.call)."""

    class APIStatusError(Exception):
        status_code = 429
        body: ClassVar[dict[str, str]] = {"code": "insufficient_quota", "message": "no"}

    sw = seawall.Seawall(routes={"openai": seawall.Policy.for_llm()}, entrypoints=False)
    c, by = sw.classify(Outcome(key="openai", exception=APIStatusError()))
    assert c.category is Category.QUOTA_EXHAUSTED
    assert by == "seawall.builtin.llm"
    _, by = sw.classify(Outcome(key="other", exception=APIStatusError()))
    assert by != "seawall.builtin.llm"


def test_wait_comes_from_reset_headers_when_no_retry_after() -> None:
    """A 429 without Retry-After waits for the exhausted limit's reset."""
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "6m0s",
        "x-ratelimit-remaining-tokens": "100",
        "x-ratelimit-reset-tokens": "1s",
    }
    c = classify_error(429, {"error": {"code": "rate_limit_exceeded"}}, headers)
    assert c is not None
    assert c.retry_after == 360.0
    with_ms = classify_error(429, None, {**headers, "retry-after-ms": "250"})
    assert with_ms is not None
    assert with_ms.retry_after == 0.25


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("2.5", 2.5)],
)
def test_parse_duration(text, seconds) -> None:
    """OpenAI durations are read in seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "1x", "-1s", "s", "1s" * 40, "nan"])
def test_malformed_durations_are_ignored(text) -> None:
    """A malformed duration is treated as absent."""
    assert parse_duration(text) is None


def test_parse_timestamp() -> None:
    """Anthropic RFC 3339 resets are seconds from now; malformed or naive ones are ignored."""
    assert parse_timestamp("2030-01-01T00:00:10Z", now=1893456000.0) == pytest.approx(10.0)
    assert parse_timestamp("2000-01-01T00:00:00+00:00") == 0.0
    assert parse_timestamp("2030-01-01T00:00:10") is None
    assert parse_timestamp("tomorrow") is None


def test_rate_info_and_reset_wait() -> None:
    """Rate-limit headers give the refill rate; malformed counts are ignored."""
    info = rate_info(
        {
            "x-ratelimit-limit-requests": "100",
            "x-ratelimit-remaining-requests": "90",
            "x-ratelimit-reset-requests": "1s",
        }
    )
    assert info is not None
    assert info.rate == pytest.approx(10.0)
    assert (
        rate_info({"x-ratelimit-limit-requests": "x", "x-ratelimit-remaining-requests": "1"})
        is None
    )
    assert reset_wait({"x-ratelimit-reset-requests": "garbage"}) is None


def test_model_from_json() -> None:
    """The top-level model of a JSON body, and nothing for odd bodies."""
    assert model_from_json(b'{"model": "gpt-4o", "messages": []}') == "gpt-4o"
    assert model_from_json(b'{"messages": [{"model": "x"}]}') is None
    assert model_from_json(b"[1]") is None
    assert model_from_json(b'{"model": "a b"}') is None


async def test_a_retry_policy_instance_without_post_is_obeyed(fake) -> None:
    """for_llm(retry=RetryPolicy(max_attempts=3)): a POST that gets a 503 is sent once, not 4x."""
    fake.then(status(503), status(503), status(503), status(503))
    sw = llm_seawall(retry=seawall.RetryPolicy(max_attempts=3))
    code, _ = await post(sw, fake.url + CHAT)
    await sw.aclose()
    assert code == 503
    assert fake.hits == 1
    fake.then(status(503), status(503), status(503), status(503))
    sw = llm_seawall(retry={"max_attempts": 3, "base_delay": 0.0})  # a dict keeps POST retried
    code, _ = await post(sw, fake.url + CHAT)
    await sw.aclose()
    assert code == 503
    assert fake.hits == 1 + 3
