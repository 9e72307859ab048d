"""Server wait hints: Retry-After (seconds, HTTP-date), retry-after-ms, x-should-retry."""

from __future__ import annotations

import email.utils
import time

import pytest

import seawall
from seawall.retry_after import parse_retry_after, server_wait, should_retry_header

from ._helpers import Recorder, policy
from .conftest import status

NOW = 1_700_000_000.0


def test_parse_seconds_and_dates() -> None:
    """Delta-seconds and HTTP-dates become seconds; a past date is 0."""
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 0 ") == 0.0
    future = email.utils.formatdate(NOW + 30, usegmt=True)
    past = email.utils.formatdate(NOW - 30, usegmt=True)
    assert parse_retry_after(future, now=NOW) == pytest.approx(30.0)
    assert parse_retry_after(past, now=NOW) == 0.0
    assert server_wait({"retry-after-ms": "1500"}) == 1.5
    assert server_wait({"retry-after-ms": "250", "retry-after": "9"}) == 0.25


@pytest.mark.parametrize(
    "value",
    [
        "soon",
        "-5",
        "NaN",
        "nan",
        "inf",
        "1e309",
        "9" * 100,
        "x" * 10_240,
        "",
        "5, 6",
        "0x10",
        "Wed, 99 Foo 2020 10:00:00 GMT",
        "Wed, 21 Oct 2015 07:28:00",  # no zone
        "\u0663",  # an Arabic-Indic digit: isdigit() but not a header number
        "1_000",
        "1e3",
        "+5",
    ],
)
def test_malformed_values_are_absent(value) -> None:
    """A malformed or hostile Retry-After is treated as absent (None), never raised."""
    assert parse_retry_after(value, now=NOW) is None
    assert server_wait({"retry-after": value, "retry-after-ms": value}, now=NOW) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("TRUE ", True), ("false", False), ("maybe", None), ("", None)],
)
def test_should_retry_header(value, expected) -> None:
    """x-should-retry is read case-insensitively; anything but true/false is absent."""
    assert should_retry_header({"x-should-retry": value}) is expected


async def _run(
    upstream, make_session, recorder: Recorder, *, max_attempts: int = 3, **kwargs: object
) -> int:
    _, server = upstream
    sw = seawall.Seawall(
        policy(max_attempts=max_attempts, **kwargs), entrypoints=False, plugins=[recorder]
    )
    async with (
        make_session(sw, max_field_size=32_768) as session,
        session.get(server.make_url("/")) as resp,
    ):
        await resp.read()
        return resp.status


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after-ms": "2500"}, 2.5),
        ({"retry-after-ms": "2500", "Retry-After": "9"}, 2.5),
    ],
)
async def test_retry_after_sets_the_delay(upstream, make_session, headers, expected) -> None:
    """A 503 with a wait hint is retried after exactly the server's wait."""
    up, _ = upstream
    up.then(status(503, **headers))
    rec = Recorder()
    assert await _run(upstream, make_session, rec) == 200
    assert rec.delays() == [(expected, "retry-after")]
    assert up.hits == 2


async def test_retry_after_http_date(upstream, make_session) -> None:
    """An HTTP-date Retry-After is the time until that date."""
    up, _ = upstream
    up.then(status(503, **{"Retry-After": email.utils.formatdate(time.time() + 30, usegmt=True)}))
    rec = Recorder()
    assert await _run(upstream, make_session, rec) == 200
    [(delay, why)] = rec.delays()
    assert why == "retry-after"
    assert 28.0 <= delay <= 30.0


@pytest.mark.parametrize("value", ["soon", "-5", "NaN", "1e309", "9" * 100, "x" * 10_240])
async def test_malformed_retry_after_falls_back_to_backoff(upstream, make_session, value) -> None:
    """A hostile Retry-After through a real response is ignored: computed backoff is used."""
    up, _ = upstream
    up.default = status(503, **{"Retry-After": value, "retry-after-ms": value})
    rec = Recorder()
    assert await _run(upstream, make_session, rec, max_delay=1.0) == 503
    assert up.hits == 3
    assert [why for _, why in rec.delays()] == ["backoff", "backoff"]
    assert all(0.0 <= d <= 1.0 for d, _ in rec.delays())


@pytest.mark.parametrize(
    "headers", [{"Retry-After": "120"}, {"retry-after-ms": "120000"}, {"Retry-After": "9" * 12}]
)
async def test_wait_above_retry_after_max_returns_the_response(
    upstream, make_session, headers
) -> None:
    """A server asking for more than retry_after_max is not retried; the caller gets its 503."""
    up, _ = upstream
    up.default = status(503, body="come back later", **headers)
    rec = Recorder()
    up_, server = upstream
    sw = seawall.Seawall(policy(retry_after_max=60.0), entrypoints=False, plugins=[rec])
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 503
        assert await resp.text() == "come back later"
    assert up_.hits == 1
    [call] = rec.of("call")
    assert "retry_after_max" in (call.stopped_because or "")


async def test_x_should_retry_false_stops(upstream, make_session) -> None:
    """x-should-retry: false stops retrying even a 503."""
    up, _ = upstream
    up.default = status(503, **{"x-should-retry": "false"})
    assert await _run(upstream, make_session, Recorder()) == 503
    assert up.hits == 1


async def test_x_should_retry_true_retries_a_client_error(upstream, make_session) -> None:
    """x-should-retry: true makes even a 400 retryable (the server knows best)."""
    up, _ = upstream
    up.then(status(400, **{"x-should-retry": "true"}))
    assert await _run(upstream, make_session, Recorder()) == 200
    assert up.hits == 2


async def test_429_retry_after_starts_a_cooldown_for_the_key(upstream, make_session) -> None:
    """A 429 with Retry-After makes the whole key cool down for that long."""
    up, server = upstream
    up.default = status(429, **{"Retry-After": "30"})
    sw = seawall.Seawall(policy(max_attempts=1), entrypoints=False)
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 429
    [state] = sw.health()["keys"].values()
    assert 25.0 < state["cooldown"] <= 30.0
