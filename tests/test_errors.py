"""seawall's errors: one hierarchy, aiohttp-compatible, helpful messages without secrets."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

import seawall
from seawall.aiohttp import CLIENT_TWINS
from seawall.errors import AttemptRecord

from ._helpers import Recorder, policy
from ._servers import closed_port

SECRET = "SECRET-7f3a9c"


def test_hierarchy() -> None:
    """Every seawall error is a SeawallError; each aiohttp twin is also a ClientConnectionError."""
    for base, twin in CLIENT_TWINS.items():
        assert issubclass(base, seawall.SeawallError)
        assert issubclass(twin, base)
        assert issubclass(twin, aiohttp.ClientConnectionError)
        assert not issubclass(base, aiohttp.ClientError)
    assert set(CLIENT_TWINS) == {
        seawall.CircuitOpenError,
        seawall.RetryBudgetExhaustedError,
        seawall.DeadlineExceededError,
        seawall.RetriesExhaustedError,
    }


def test_errors_carry_key_and_attempts() -> None:
    """An error keeps its key and attempt history, and lists the attempts in its notes."""
    record = AttemptRecord(1, "HTTP 503", "server", 0.01, delay=0.2)
    error = seawall.RetriesExhaustedError("gave up", key="k", attempts=[record])
    assert error.key == "k"
    assert error.attempts == (record,)
    assert error.__notes__ == ["attempt 1: HTTP 503 (server, 0.010s), retried after 0.200s"]
    opened = seawall.CircuitOpenError("api", 12.5)
    assert opened.retry_after == 12.5
    assert "api" in str(opened)
    assert "12.5s" in str(opened)
    assert "fallback" in str(opened)


async def _each_error(make_session) -> list[BaseException]:  # type: ignore[no-untyped-def]
    """Provoke every seawall error through the middleware; return them as caught."""
    caught: list[BaseException] = []
    url = f"http://127.0.0.1:{closed_port()}/"
    sw = seawall.Seawall(policy(max_attempts=2), entrypoints=False)
    async with make_session(sw) as session:
        try:
            await session.get(url)
        except aiohttp.ClientError as exc:
            caught.append(exc)
        with seawall.deadline(0):
            try:
                await session.get(url)
            except aiohttp.ClientError as exc:
                caught.append(exc)
    budget = seawall.Policy(
        budget=seawall.BudgetPolicy(ratio=0, min_retries_per_second=0),
        breaker=seawall.BreakerPolicy(failure_threshold=1),
    )
    sw = seawall.Seawall(budget, entrypoints=False)
    async with make_session(sw) as session:
        for _ in range(2):  # the budget stops the first call, whose failure opens the breaker
            try:
                await session.get(url)
            except aiohttp.ClientError as exc:
                caught.append(exc)
    return caught


async def test_except_client_error_catches_every_middleware_error(make_session) -> None:
    """Existing `except aiohttp.ClientError` handlers catch all four seawall errors."""
    caught = await _each_error(make_session)
    kinds = [type(e).__mro__[1] for e in caught]
    assert kinds == [
        seawall.RetriesExhaustedError,
        seawall.DeadlineExceededError,
        seawall.RetryBudgetExhaustedError,
        seawall.CircuitOpenError,
    ]


async def test_messages_name_the_key_the_last_failure_and_a_fix(make_session) -> None:
    """RetriesExhaustedError says which request, how many attempts, what failed, what to do."""
    port = closed_port()
    sw = seawall.Seawall(policy(max_attempts=2), entrypoints=False)
    async with make_session(sw) as session:
        with pytest.raises(seawall.RetriesExhaustedError) as info:
            await session.get(f"http://127.0.0.1:{port}/things")
    text = str(info.value)
    assert f"GET http://127.0.0.1:{port}/things" in text
    assert "2 attempt(s)" in text
    assert "ClientConnectorError" in text
    assert "max_attempts" in text
    assert info.value.key == f"http://127.0.0.1:{port}"
    assert len(info.value.__notes__) == 2


async def test_no_secret_leaves_in_errors_events_or_incidents(make_session) -> None:
    """API keys in the query, URL credentials and Authorization headers are masked everywhere."""
    rec = Recorder()
    critical = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=2),
        budget=seawall.BudgetPolicy(enabled=False),
    )
    sw = seawall.Seawall(critical, entrypoints=False, plugins=[rec])
    port = closed_port()
    with_credentials = f"http://user:{SECRET}@127.0.0.1:{port}/v1?api_key={SECRET}"
    with_query = f"http://127.0.0.1:{port}/v1?api_key={SECRET}&token={SECRET}"
    errors: list[BaseException] = []
    async with make_session(sw) as session:
        with seawall.context(critical=True):
            for url, headers in [
                (with_credentials, {}),
                (with_query, {"Authorization": f"Bearer {SECRET}"}),
            ]:
                with pytest.raises(aiohttp.ClientError) as info:
                    await session.get(url, headers=headers)
                errors.append(info.value)
    await sw.aclose()
    texts = [text for e in errors for text in (str(e), repr(e), *getattr(e, "__notes__", []))]
    texts += [repr(e.as_dict()) for e in rec.events]
    texts += [repr(i) for i in rec.incidents]
    texts += [repr(sw.health())]
    assert rec.incidents, "a critical failure must escalate"
    assert any("api_key=***" in t or "api_key=%2A%2A%2A" in t for t in texts)
    for text in texts:
        assert SECRET not in text


async def test_notes_of_call_errors_are_redacted() -> None:
    """The attempt notes seawall adds through sw.call mask bearer tokens in the exception text."""
    sw = seawall.Seawall(policy(max_attempts=2), entrypoints=False)

    async def leaky() -> None:
        raise ConnectionResetError(f"reset while sending Authorization: Bearer {SECRET}")

    with pytest.raises(ConnectionResetError) as info:
        await sw.call(leaky, key="leaky")
    notes = info.value.__notes__
    assert len(notes) == 3
    assert all(SECRET not in note for note in notes)


async def test_cancelled_error_is_not_a_seawall_error() -> None:
    """Cancellation is never turned into a seawall error."""
    sw = seawall.Seawall(entrypoints=False)

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await sw.call(cancelled, key="c")
