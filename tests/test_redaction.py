"""Secrets sent in headers and query never reach events, incidents, webhooks, logs or errors."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

import seawall
from seawall.plugins.webhook import WebhookSink
from seawall.policy import BreakerPolicy, Policy, RetryPolicy
from seawall.redact import redact_text

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
        # hold=0: the call after the opening must fail at once (its CircuitOpenError is
        # checked below), not wait for the probe, which under traffic can be near.
        Policy(
            retry=RetryPolicy(max_attempts=3),
            breaker=BreakerPolicy(failure_threshold=2, hold=0.0),
        ),
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


async def test_client_response_error_text_leaks_nothing(upstream, caplog):
    """aiohttp's ClientResponseError repr holds the request headers; none reach notes or logs."""
    from ._helpers import Recorder, policy

    up, server = upstream
    up.then(status(503), status(503), status(401))
    recorder = Recorder()
    sw = seawall.Seawall(plugins=[recorder], entrypoints=False)
    url = server.make_url("/v1/things").with_query(QUERY)
    headers = {k: v for k, v in SECRETS.items() if k != "Cookie"}
    errors: list[aiohttp.ClientResponseError] = []
    with caplog.at_level(logging.DEBUG, logger="seawall"):
        async with aiohttp.ClientSession(
            headers=headers, cookies={"session": "SECRETCOOKIE789"}
        ) as plain:  # an SDK's own session: seawall sees only the exceptions

            async def fetch() -> str:
                async with plain.get(url, raise_for_status=True) as resp:
                    return await resp.text()

            for _ in range(2):  # two 503s (retried once, then given up), then a 401
                with pytest.raises(aiohttp.ClientResponseError) as info:
                    await sw.call(fetch, key="api", policy=policy(max_attempts=2))
                errors.append(info.value)
        await sw.aclose()
    assert [e.status for e in errors] == [503, 401]
    request_headers = errors[0].request_info.headers
    assert request_headers["x-api-key"] == SECRETS["x-api-key"]  # the secrets were there
    assert "SECRETCOOKIE789" in request_headers["Cookie"]
    notes = [note for error in errors for note in error.__notes__]
    assert any("ClientResponseError(RequestInfo(" in note for note in notes)  # the repr
    assert len(recorder.incidents) == 1  # the 401
    texts = [*notes, caplog.text, repr(sw.health())]
    texts += [r.getMessage() + repr(r.__dict__) for r in caplog.records]
    texts += [repr(e) + repr(e.as_dict()) for e in recorder.events]
    texts += [repr(i) + i.summary() for i in recorder.incidents]
    blob = "\n".join(texts)
    leaks = [needle for needle in NEEDLES if needle in blob]
    assert not leaks, f"secrets leaked: {leaks}"
    assert "'x-api-key': '***'" in blob
    whole = redact_text(repr(errors[0]))  # records keep 300 characters; the whole repr too
    assert "'Cookie': '***'" in whole
    assert not [needle for needle in NEEDLES if needle in whole]


@pytest.mark.parametrize("as_json", [False, True])
def test_classify_command_redacts_what_it_echoes(capsys, as_json):
    """`seawall classify` masks secrets in the URL, the headers and the exception it echoes."""
    from seawall.cli import main

    argv = [
        "classify",
        "--status",
        "401",
        "--url",
        "https://svc:SECRETPASS@api.example.com/v1?api_key=SECRETQAPI&n=1",
        "--header",
        f"Authorization: {SECRETS['Authorization']}",
        "--header",
        f"x-api-key: {SECRETS['x-api-key']}",
        "--header",
        f"Cookie: {SECRETS['Cookie']}",
        *(["--json"] if as_json else []),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (
        main(
            [
                "classify",
                "--exception",
                "ClientResponseError: 503, headers=<CIMultiDictProxy('x-api-key': 'SECRETXAPIKEY', "
                "'Cookie': 'session=SECRETCOOKIE789')>, url='https://h/?token=SECRETQTOKEN'",
                "--json",
            ]
        )
        == 0
    )
    out += capsys.readouterr().out
    assert main(["classify", "--status", "500", "--header", "x-api-key SECRETXAPIKEY"]) == 2
    out += capsys.readouterr().out
    leaks = [n for n in [*NEEDLES, "SECRETPASS"] if n in out]
    assert not leaks, f"secrets leaked: {leaks}\n{out}"
    assert "api_key=***" in out
    assert "is not 'Name: value'" in out
    if as_json:
        assert '"x-api-key": "***"' in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "headers=<CIMultiDictProxy('X-Api-Key': 'S1', 'Accept': '*/*')>",
            "headers=<CIMultiDictProxy('X-Api-Key': '***', 'Accept': '*/*')>",
        ),
        ('{"token": "S2", "model": "gpt-4o"}', '{"token": "***", "model": "gpt-4o"}'),
        ("Client(api_key='S3', timeout=5)", "Client(api_key='***', timeout=5)"),
        ("Cookie: a=S4; b=S5\nnext", "Cookie: ***\nnext"),
        ("x-api-key=S6 sent", "x-api-key=*** sent"),
        (
            "GET /v1?n=1&client_secret=S7&x-amz-signature=S8#top",
            "GET /v1?n=1&client_secret=***&x-amz-signature=***#top",
        ),
        (
            "TokenExpiredError: token expired; status code=200",
            "TokenExpiredError: token expired; status code=200",
        ),
    ],
)
def test_redact_text_masks_secret_pairs_and_leaves_the_rest(text: str, expected: str) -> None:
    """Secret names decide; other names, prose and status codes stay readable."""
    assert redact_text(text) == expected


async def test_plugin_fault_log_is_redacted(upstream, make_session, caplog) -> None:
    """A plugin raising with a secret in its message is logged, traceback included, masked."""
    up, server = upstream

    class Leaky:
        @seawall.hookimpl(tryfirst=True)
        def seawall_classify(self, outcome: seawall.Outcome) -> None:
            raise RuntimeError(
                f"cannot classify; headers={{'x-api-key': '{SECRETS['x-api-key']}'}}"
            )

    sw = seawall.Seawall(plugins=[Leaky()], entrypoints=False)
    with caplog.at_level(logging.DEBUG, logger="seawall"):
        async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
            assert resp.status == 200  # the built-in classifier answered instead
        await sw.aclose()
    (record,) = [r for r in caplog.records if "raised in seawall_classify" in r.getMessage()]
    assert "Traceback (most recent call last)" in record.getMessage()
    assert "'x-api-key': '***'" in record.getMessage()
    assert SECRETS["x-api-key"] not in caplog.text
    assert up.hits == 1


async def test_a_key_given_by_the_user_is_shown_redacted(caplog) -> None:
    """A user's own key (a URL with credentials, a query API key) is kept and shown masked."""
    caplog.set_level(logging.DEBUG, logger="seawall")
    capture = Capture()
    sw = seawall.Seawall(
        Policy(retry=RetryPolicy(max_attempts=2, base_delay=0.0)),
        routes={"127.0.0.1": Policy(key="https://bob:SECRETPW@127.0.0.1/?api_key=SECRETQAPI")},
        plugins=[capture],
        entrypoints=False,
    )
    secret_key = "https://alice:SECRETPW@api.example.com/v1?api_key=SECRETQAPI&page=2"
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionResetError("reset by peer")
        return "ok"

    with seawall.testing.mode():
        assert await sw.call(fetch, key=secret_key) == "ok"
        assert await sw.call(fetch, key=secret_key) == "ok"  # the same key both times
    route = sw.registry.route_for(URL("http://127.0.0.1:9/x"))
    shown = repr(dict(sw.health().to_dict())) + repr(capture.seen) + caplog.text + route.key
    assert "SECRETPW" not in shown
    assert "SECRETQAPI" not in shown
    (key,) = sw.health()["keys"]
    assert key == "https://***@api.example.com/v1?api_key=***&page=2"
    assert sw.health()["keys"][key]["requests"] == 2
    assert route.key == "https://***@127.0.0.1/?api_key=***"
