"""URL credentials never leave the process, whatever the password holds (an unencoded
``/``, ``?``, ``#`` or ``:``): not in keys, health, logs or ASGI problem bodies."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import seawall
from seawall.asgi import SeawallMiddleware, _upstream
from seawall.redact import MASK, redact_head, redact_key, redact_text

FUZZ = settings(max_examples=300, deadline=None, database=None)

#: Secrets are upper-case letters and digits (with separators): hosts and paths below are
#: lower-case, so any upper-case letter or digit left in the output is part of a secret.
_USER = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=20)
_PASSWORD = st.lists(
    st.one_of(
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=8),
        st.sampled_from(["/", "?", "#", ":", "+", "=", "%2F", "!", "$", "&", ";", "~"]),
    ),
    min_size=1,
    max_size=12,
).map("".join)
#: RFC 3986 reads ``user:8080/...`` as a host and a port: yarl does, and so do we.
_PASSWORD = _PASSWORD.filter(lambda p: re.match(r"[0-9]{1,5}[/?#]", p) is None)
_HOST = st.sampled_from(["api.example.com", "internal-billing.corp", "h"])
_TAIL = st.sampled_from(["", "/", "/va/chat", "/x?y=z", "?api_key=abc", "#gpt"])


def _leaks(text: str) -> bool:
    return any(c.isupper() or c.isdigit() for c in text)


@FUZZ
@given(st.sampled_from(["https", "http", "redis"]), _USER, st.none() | _PASSWORD, _HOST, _TAIL)
@example("https", "USER", "PA/SS", "api.example.com", "/x")  # the audit's
@example("https", "USER", "A/B?C#D:E", "api.example.com", "")
def test_no_part_of_url_credentials_survives(
    scheme: str, user: str, password: str | None, host: str, tail: str
) -> None:
    """``redact_text``/``redact_key`` mask all of the userinfo; the ASGI ``upstream`` shows
    the host behind a mask, cut before any path, or nothing of the authority."""
    userinfo = user if password is None else f"{user}:{password}"
    url = f"{scheme}://{userinfo}@{host}{tail}"
    for shown in (redact_text(url), redact_key(url), redact_text(f"get {url}: failed")):
        assert not _leaks(shown), (url, shown)
    for limit in (5, 20, len(url)):
        assert not _leaks(redact_head(url, limit)), (url, limit)
    upstream = _upstream(url)
    assert not _leaks(upstream), (url, upstream)
    model = tail if tail.startswith("#") else ""  # Policy(key="model")'s suffix is kept
    assert upstream in (f"{scheme}://{MASK}@{host}{model}", f"{scheme}://{MASK}"), (url, upstream)


def test_urls_without_credentials_keep_their_host() -> None:
    """A key with no userinfo is shown as before: scheme, host and port, no path; an ``@``
    in a path or query after a port is not taken for credentials (RFC 3986, as yarl)."""
    assert _upstream("https://api.example.com:443/v1?api_key=x") == "https://api.example.com:443"
    assert _upstream("https://api.example.com:443#gpt-4") == "https://api.example.com:443#gpt-4"
    assert _upstream("http://users-svc:8080/find?email=a@b.example") == "http://users-svc:8080"
    assert _upstream("https://registry.example:443/@types/node") == "https://registry.example:443"
    assert _upstream("http://[::1]:8080/x") == "http://[::1]:8080"
    assert redact_text("see https://api.example.com/v1 now") == "see https://api.example.com/v1 now"
    line = "GET http://users-svc:8080/find?email=a@b.example: HTTP 503"
    assert redact_text(line) == line


def test_a_password_holding_a_double_slash_is_masked_too() -> None:
    """``//`` inside a password (read up to 128 characters) is masked like any other."""
    assert (
        redact_text("https://svc:AB//CD@api.example.com/x") == f"https://{MASK}@api.example.com/x"
    )
    assert _upstream("https://svc:AB//CD@api.example.com/x") == f"https://{MASK}@api.example.com"


def test_an_authority_that_is_not_host_and_port_is_not_shown() -> None:
    """When what is left before the path is not ``host[:port]`` (credentials the pattern
    could not end), the upstream shown is the scheme alone, never a piece of them."""
    assert _upstream("https://svc:A" + "/" * 200 + "B@api.example.com/x") == f"https://{MASK}"


def test_userinfo_scan_is_linear_on_hostile_text() -> None:
    """Many ``//user:`` starts that never reach an ``@``: an answer, nothing masked."""
    for text in ("//u:a/b" * 50_000, "//a:x" * 70_000, "//:" * 100_000):
        assert redact_text(text) == text


async def test_credentials_with_a_slash_stay_out_of_answers_health_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A key whose password holds ``/``: the 503 problem, the health detail and the
    log lines show no part of it; other routes answer as usual."""
    key = "https://svc:PW0/SECRET9@api.example.com/v1"
    sw = seawall.Seawall(
        seawall.Policy(
            retry=seawall.RetryPolicy(max_attempts=1),
            breaker=seawall.BreakerPolicy(failure_threshold=1, recovery_timeout=60.0),
        ),
        entrypoints=False,
    )

    async def down() -> None:
        raise ConnectionResetError(f"reset by {key}")

    async def call(_request: Request) -> JSONResponse:
        return JSONResponse(await sw.call(down, key=key))

    async def fine(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[Route("/call", call), Route("/fine", fine)],
        middleware=[
            Middleware(SeawallMiddleware, seawall=sw, health_path="/h", health_detail=True)
        ],
    )
    caplog.set_level(logging.DEBUG, logger="seawall")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        first = await c.get("/call")  # the reset: the app's 500
        opened = await c.get("/call")  # the breaker is open: seawall's 503
        health = await c.get("/h")
        other = await c.get("/fine")
    assert first.status_code == 500
    assert opened.status_code == 503
    body: dict[str, Any] = opened.json()
    assert body["upstream"] == f"https://{MASK}@api.example.com"
    assert other.json() == {"ok": True}
    for text in (opened.text, health.text, caplog.text, json.dumps(sw.health(), default=str)):
        assert "PW0" not in text
        assert "SECRET9" not in text
