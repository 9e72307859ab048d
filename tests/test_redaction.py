"""Secrets sent in headers and query never reach events, incidents, webhooks, logs or errors."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import seawall
from seawall.plugins.webhook import WebhookSink
from seawall.policy import BreakerPolicy, Policy, RetryPolicy

from .conftest import status

SECRETS = {
    "Authorization": "Bearer sk-live-SECRETAUTH123",
    "Proxy-Authorization": "Basic SECRETPROXY456",
    "Cookie": "session=SECRETCOOKIE789",
    "api-key": "SECRETAPIKEY",
    "x-api-key": "SECRETXAPIKEY",
    "anthropic-api-key": "sk-ant-SECRETANTHROPIC",
}
QUERY = {"key": "SECRETQKEY", "api_key": "SECRETQAPI", "token": "SECRETQTOKEN", "sig": "SECRETQSIG"}
NEEDLES = [*SECRETS.values(), *QUERY.values(), "SECRETAUTH", "SECRETANTHROPIC"]


class Capture:
    """A plugin keeping every event and incident, as text."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @seawall.hookimpl
    def seawall_event(self, event: Any) -> None:
        self.seen.append(repr(event) + repr(event.as_dict()))

    @seawall.hookimpl
    def seawall_escalate(self, incident: Any) -> None:
        self.seen.append(repr(incident) + incident.summary() + repr(incident.as_dict()))


async def _disconnect(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()  # the client sees ServerDisconnectedError
    return web.Response()


async def test_secrets_never_leave_through_any_path(upstream, make_session, aiohttp_server, caplog):
    """Success, 503 retries, exhausted retries, 401 escalation and an open breaker leak nothing."""
    up, server = upstream
    received: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.text())
        return web.Response()

    hook_app = web.Application()
    hook_app.router.add_post("/hook", hook)
    hook_server = await aiohttp_server(hook_app, host="127.0.0.1")
    capture = Capture()
    sw = seawall.Seawall(
        Policy(retry=RetryPolicy(max_attempts=3), breaker=BreakerPolicy(failure_threshold=2)),
        plugins=[capture, WebhookSink(str(hook_server.make_url("/hook")))],
        entrypoints=False,
    )
    up.then(
        status(200),  # success
        status(503),
        status(503),
        status(200),  # retried 503s
        _disconnect,
        _disconnect,
        _disconnect,  # exhausted retries with exceptions
        status(401),  # escalated
    )
    up.default = status(500)
    errors: list[BaseException] = []
    url = server.make_url("/v1/things").with_query(QUERY)
    with caplog.at_level(logging.DEBUG, logger="seawall"):
        async with make_session(sw, headers=SECRETS) as session:
            for _ in range(2):
                async with session.get(url) as resp:
                    assert resp.status == 200
            with pytest.raises(aiohttp.ClientConnectionError) as info:
                await session.get(url)
            errors.append(info.value)
            async with session.get(url) as resp:
                assert resp.status == 401
            for _ in range(2):  # two calls failing with 500s open it (the 401 reset the count)
                async with session.get(url) as resp:
                    assert resp.status == 500
            with pytest.raises(seawall.CircuitOpenError) as info:
                await session.get(url)
            errors.append(info.value)

        async def sdk_call() -> None:
            raise ConnectionResetError(f"reset while calling {url}")

        with pytest.raises(ConnectionResetError) as info:
            await sw.call(sdk_call, key="sdk", policy=Policy(retry=RetryPolicy(max_attempts=2)))
        errors.append(info.value)
        await sw.aclose()
    assert len(received) >= 1
    assert len(capture.seen) > 10
    texts = [*capture.seen, *received, caplog.text, repr(sw.health())]
    texts += [r.getMessage() + repr(r.__dict__) for r in caplog.records]
    for error in errors:
        texts += getattr(error, "__notes__", [])
        if isinstance(error, seawall.SeawallError):  # ours: message and whole traceback
            texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
        else:  # the caller's own exception is re-raised as it is; our notes are checked
            assert getattr(error, "__notes__", None)
    blob = "\n".join(texts)
    leaks = [needle for needle in NEEDLES if needle in blob]
    assert not leaks, f"secrets leaked: {leaks}"
    assert "***" in blob  # the redacted forms are there instead
