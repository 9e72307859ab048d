"""The built-in HTTP status table, through a real server and the middleware."""

from __future__ import annotations

import pytest

import seawall
from seawall.plugins.builtin.http import classify_status

from .conftest import status

RETRYABLE = [408, 425, 429, 500, 502, 503, 504, 529]
NOT_RETRYABLE = [400, 404, 405, 410, 413, 414, 415, 422, 501]


def _sw(**retry: object) -> seawall.Seawall:
    retry.setdefault("max_attempts", 3)
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(**retry),  # type: ignore[arg-type]
        breaker=seawall.BreakerPolicy(enabled=False),
    )
    return seawall.Seawall(policy, entrypoints=False)


@pytest.mark.parametrize("code", [200, 201, 204, 301, 304])
async def test_success_statuses_are_sent_once(upstream, make_session, code) -> None:
    """2xx and 3xx are successes: one upstream hit, the response returned."""
    up, server = upstream
    up.default = status(code)
    async with (
        make_session(_sw()) as session,
        session.get(server.make_url("/"), allow_redirects=False) as resp,
    ):
        assert resp.status == code
    assert up.hits == 1
    assert classify_status(code).is_success


@pytest.mark.parametrize("code", RETRYABLE)
async def test_retryable_statuses_are_retried_up_to_max_attempts(
    upstream, make_session, code
) -> None:
    """Each retryable status is retried until max_attempts and then returned as it is."""
    up, server = upstream
    up.default = status(code, body=f"failed {code}")
    async with make_session(_sw()) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == code
        assert await resp.text() == f"failed {code}"
    assert up.hits == 3
    assert classify_status(code).retryable


@pytest.mark.parametrize("code", RETRYABLE)
async def test_retryable_status_then_success(upstream, make_session, code) -> None:
    """A retryable status followed by a 200 gives the caller the 200."""
    up, server = upstream
    up.then(status(code))
    async with make_session(_sw()) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 200
    assert up.hits == 2


@pytest.mark.parametrize("code", NOT_RETRYABLE)
async def test_non_retryable_statuses_are_sent_once(upstream, make_session, code) -> None:
    """Client errors and 501 are the caller's to fix: one hit, response returned."""
    up, server = upstream
    up.default = status(code)
    async with make_session(_sw()) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == code
    assert up.hits == 1
    assert not classify_status(code).retryable


@pytest.mark.parametrize("code", [401, 403])
async def test_auth_failures_are_high_severity_escalated_and_not_retried(
    upstream, make_session, code
) -> None:
    """401/403 are sent once, classified HIGH and handed to the escalation sinks."""
    up, server = upstream
    up.default = status(code)
    incidents: list[seawall.Incident] = []
    seen: list[seawall.Classification] = []

    class Sink:
        @seawall.hookimpl
        def seawall_escalate(self, incident: seawall.Incident) -> None:
            incidents.append(incident)

        @seawall.hookimpl
        def seawall_event(self, event: object) -> None:
            return None

    class Spy:
        @seawall.hookimpl(tryfirst=True)
        def seawall_classify(self, outcome: seawall.Outcome) -> None:
            seen.append(classify_status(outcome.status or 0))

    sw = seawall.Seawall(entrypoints=False, plugins=[Sink(), Spy()])
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == code
    await sw.aclose()
    assert up.hits == 1
    assert seen[0].severity is seawall.Severity.HIGH
    assert seen[0].escalate
    assert len(incidents) == 1
    assert incidents[0].severity is seawall.Severity.HIGH
    assert incidents[0].category in {
        seawall.Category.AUTHENTICATION,
        seawall.Category.AUTHORIZATION,
    }


async def test_409_is_retried_at_most_once_by_default(upstream, make_session) -> None:
    """A conflict is retried once (lock contention), not max_attempts times."""
    up, server = upstream
    up.default = status(409)
    async with make_session(_sw(max_attempts=5)) as session, session.get(server.make_url("/")) as r:
        assert r.status == 409
    assert up.hits == 2


async def test_409_then_success(upstream, make_session) -> None:
    """A single conflict followed by a 200 returns the 200."""
    up, server = upstream
    up.then(status(409))
    async with make_session(_sw()) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 200
    assert up.hits == 2


async def test_retry_on_without_conflict_never_retries_409(upstream, make_session) -> None:
    """Removing CONFLICT from retry_on turns 409 retries off."""
    up, server = upstream
    up.default = status(409)
    sw = _sw(retry_on={seawall.Category.SERVER})
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 409
    assert up.hits == 1


@pytest.mark.parametrize("code", [418, 451, 499])
def test_unknown_4xx_is_client_and_not_retried(code) -> None:
    """A 4xx outside the table is the caller's problem."""
    c = classify_status(code)
    assert c.category is seawall.Category.CLIENT
    assert not c.retryable


def test_unknown_5xx_is_server_and_retried() -> None:
    """A 5xx outside the table is a retryable server failure that counts against the breaker."""
    c = classify_status(599)
    assert c.category is seawall.Category.SERVER
    assert c.retryable
    assert c.counts_as_failure
