"""Classifying attempts that raised: aiohttp's errors and any exception through ``sw.call``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest
from aiohttp import web

import seawall
from seawall import Category, Classification, Severity
from seawall.plugins.builtin import exceptions as builtin_exceptions
from seawall.plugins.builtin.patterns import MAX_TEXT

from ._servers import RawServer, closed_port, read_request, reset, self_signed
from .conftest import status


class Seen:
    """A plugin that records every outcome and the classification the built-ins give it."""

    def __init__(self) -> None:
        self.outcomes: list[seawall.Outcome] = []
        self.incidents: list[seawall.Incident] = []

    @seawall.hookimpl(tryfirst=True)
    def seawall_classify(self, outcome: seawall.Outcome) -> None:
        self.outcomes.append(outcome)

    @seawall.hookimpl
    def seawall_escalate(self, incident: seawall.Incident) -> None:
        self.incidents.append(incident)


def _sw(seen: Seen | None = None, **kwargs: object) -> seawall.Seawall:
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=3),
        breaker=seawall.BreakerPolicy(enabled=False),
    )
    return seawall.Seawall(
        policy,
        entrypoints=False,
        plugins=[seen] if seen else [],
        **kwargs,  # type: ignore[arg-type]
    )


def _classify(sw: seawall.Seawall, exc: BaseException) -> Classification:
    """What sw's classifiers (the user's patterns, then the built-ins) make of ``exc``."""
    return sw.classify(seawall.Outcome(key="k", exception=exc))[0]


# --- aiohttp's own errors, from real sockets -----------------------------------------


async def test_connection_refused_is_network_and_retried(make_session) -> None:
    """A closed port on 127.0.0.1 is a NETWORK failure, retried up to max_attempts."""
    seen = Seen()
    sw = _sw(seen)
    async with make_session(sw) as session:
        with pytest.raises(seawall.RetriesExhaustedError) as info:
            await session.get(f"http://127.0.0.1:{closed_port()}/")
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)
    assert len(seen.outcomes) == 3
    assert _classify(sw, seen.outcomes[0].exception).category is Category.NETWORK  # type: ignore[arg-type]


async def test_connection_reset_is_network_and_retried(make_session) -> None:
    """A peer that answers a request with an RST is a NETWORK failure, retried."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        reset(writer)

    seen = Seen()
    sw = _sw(seen)
    async with RawServer(handler) as server, make_session(sw) as session:
        with pytest.raises(seawall.RetriesExhaustedError) as info:
            await session.get(server.url())
    assert isinstance(info.value.__cause__, aiohttp.ClientOSError)
    assert server.connections == 3
    exc = seen.outcomes[0].exception
    assert exc is not None
    assert _classify(sw, exc).category is Category.NETWORK


async def test_disconnect_before_the_status_line_is_network(make_session) -> None:
    """A server that closes mid-way through the response head is retried, then wrapped."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")
        await writer.drain()

    seen = Seen()
    sw = _sw(seen)
    async with RawServer(handler) as server, make_session(sw) as session:
        with pytest.raises(seawall.RetriesExhaustedError) as info:
            await session.get(server.url())
    assert isinstance(info.value.__cause__, aiohttp.ServerDisconnectedError | aiohttp.ClientError)
    assert isinstance(info.value, aiohttp.ClientConnectionError)
    assert server.connections == 3


async def test_disconnect_in_an_error_body_is_network_and_retried(make_session) -> None:
    """A 500 whose body is cut short fails while seawall reads it, and is retried."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\nonly ten b")
        await writer.drain()

    seen = Seen()
    sw = _sw(seen)
    async with RawServer(handler) as server, make_session(sw) as session:
        with pytest.raises(aiohttp.ClientError):
            await session.get(server.url())
    assert server.connections == 3
    exc = seen.outcomes[0].exception
    assert exc is not None
    assert _classify(sw, exc).category is Category.NETWORK


@pytest.mark.virtual_time  # the 50 ms limit runs out only once the request is at the upstream
async def test_attempt_timeout_is_timeout_and_retried(aiohttp_server, make_session) -> None:
    """An upstream that never answers hits the per-attempt timeout: TIMEOUT, retried."""
    never = asyncio.Event()
    hits = 0

    async def handler(_request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        await never.wait()
        return web.Response()  # pragma: no cover

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    seen = Seen()
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=2),
        timeout=seawall.TimeoutPolicy(attempt=0.05, deadline=5.0),
    )
    clock = asyncio.get_running_loop().time
    sw = seawall.Seawall(policy, entrypoints=False, plugins=[seen], clock=clock)
    async with asyncio.timeout(5), make_session(sw) as session:
        with pytest.raises(seawall.RetriesExhaustedError) as info:
            await session.get(server.make_url("/"))
    assert isinstance(info.value.__cause__, TimeoutError)
    assert hits == 2
    exc = seen.outcomes[0].exception
    assert exc is not None
    assert _classify(sw, exc).category is Category.TIMEOUT


async def test_invalid_url_is_validation_and_not_retried(make_session) -> None:
    """aiohttp's InvalidURL (raised before any middleware runs) is VALIDATION, not retried."""
    seen = Seen()
    sw = _sw(seen)
    async with make_session(sw) as session:
        with pytest.raises(aiohttp.InvalidURL):
            await sw.call(session.get, "http://[::1", key="bad-url")
    assert len(seen.outcomes) == 1
    exc = seen.outcomes[0].exception
    assert exc is not None
    assert _classify(sw, exc).category is Category.VALIDATION


async def test_tls_certificate_error_is_escalated_and_not_retried(
    aiohttp_server, make_session, tmp_path
) -> None:
    """An upstream with an untrusted (self-signed) certificate is TLS: one try, escalated."""
    context = self_signed(tmp_path)
    if context is None:
        pytest.skip("no openssl CLI to make a certificate")
    hits = 0

    async def handler(_request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1  # pragma: no cover - the handshake fails first
        return web.Response()  # pragma: no cover

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, host="127.0.0.1", ssl=context)
    seen = Seen()
    sw = _sw(seen)
    async with make_session(sw) as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(f"https://127.0.0.1:{server.port}/")
    await sw.aclose()
    assert len(seen.outcomes) == 1
    assert hits == 0
    exc = seen.outcomes[0].exception
    assert exc is not None
    c = _classify(sw, exc)
    assert c.category is Category.TLS
    assert not c.retryable
    assert c.escalate
    assert [i.category for i in seen.incidents] == [Category.TLS]


# --- sw.call: any exception -----------------------------------------------------------


def _raiser(exc: BaseException) -> tuple[Callable[[], object], list[int]]:
    calls: list[int] = []

    async def fn() -> None:
        calls.append(1)
        raise exc

    return fn, calls


@pytest.mark.parametrize(
    ("message", "category", "retried"),
    [
        ("Rate limit reached for requests", Category.RATE_LIMIT, True),
        ("monthly quota used", Category.RATE_LIMIT, True),
        ("request was throttled", Category.RATE_LIMIT, True),
        ("operation timed out", Category.TIMEOUT, True),
        ("deadline exceeded", Category.TIMEOUT, True),
        ("Connection refused by host", Category.NETWORK, True),
        ("connection reset while reading", Category.NETWORK, True),
        ("Unauthorized: bad token", Category.AUTHENTICATION, False),
        ("invalid API key provided", Category.AUTHENTICATION, False),
        ("auth failed", Category.AUTHENTICATION, False),
        ("Forbidden for this project", Category.AUTHORIZATION, False),
        ("invalid input: field x", Category.VALIDATION, False),
        ("validation failed", Category.VALIDATION, False),
        ("malformed payload", Category.VALIDATION, False),
        ("out of memory", Category.RESOURCE_EXHAUSTION, False),
        ("resource exhausted", Category.RESOURCE_EXHAUSTION, False),
        ("at capacity", Category.RESOURCE_EXHAUSTION, False),
        ("out of space on device", Category.RESOURCE_EXHAUSTION, False),
    ],
)
async def test_message_patterns(message, category, retried) -> None:
    """Plain exceptions are classified by the message table; retried when in default retry_on."""
    sw = _sw()
    fn, calls = _raiser(RuntimeError(message))
    with pytest.raises(RuntimeError) as info:
        await sw.call(fn, key="patterns")
    assert _classify(sw, info.value).category is category
    assert len(calls) == (3 if retried else 1)
    assert any("seawall" in note for note in info.value.__notes__)


def test_exception_type_wins_over_the_message() -> None:
    """A TimeoutError saying 'rate limit' is a TIMEOUT: the type is looked at first."""
    sw = _sw()
    assert _classify(sw, TimeoutError("rate limit")).category is Category.TIMEOUT
    assert _classify(sw, ConnectionResetError("invalid input")).category is Category.NETWORK


@pytest.mark.parametrize(
    ("attribute", "value", "category"),
    [
        ("status_code", 503, Category.SERVER),
        ("status_code", 401, Category.AUTHENTICATION),
        ("status", 429, Category.RATE_LIMIT),
        ("status", 404, Category.CLIENT),
    ],
)
def test_status_attributes_after_patterns(attribute, value, category) -> None:
    """An SDK error with a status_code/status attribute is classified like that HTTP status."""

    class SDKError(Exception):
        pass

    exc = SDKError("something odd happened")
    setattr(exc, attribute, value)
    assert _classify(_sw(), exc).category is category


def test_pattern_before_status_attribute() -> None:
    """The message table is consulted before the status attribute."""

    class SDKError(Exception):
        status_code = 500

    assert _classify(_sw(), SDKError("quota exceeded")).category is Category.RATE_LIMIT


async def test_unknown_errors_are_retried_at_most_once() -> None:
    """An exception nothing recognises is UNKNOWN and retried once, not max_attempts times."""
    policy = seawall.Policy(retry=seawall.RetryPolicy(max_attempts=5))
    sw = seawall.Seawall(policy, entrypoints=False)
    fn, calls = _raiser(RuntimeError("zxqv"))
    with pytest.raises(RuntimeError):
        await sw.call(fn, key="unknown")
    assert len(calls) == 2
    assert _classify(sw, RuntimeError("zxqv")).category is Category.UNKNOWN


async def test_add_pattern_is_tried_before_the_builtins() -> None:
    """A user pattern overrides the built-in table: a 'rate limit' message becomes VALIDATION."""
    sw = _sw()
    sw.add_pattern(r"rate limit", Classification(category=Category.VALIDATION, reason="ours"))
    fn, calls = _raiser(RuntimeError("rate limit reached"))
    with pytest.raises(RuntimeError):
        await sw.call(fn, key="user-pattern")
    assert len(calls) == 1
    assert _classify(sw, RuntimeError("rate limit reached")).reason == "ours"


async def test_patterns_argument_and_exception_types() -> None:
    """Seawall(patterns=...) registers user patterns; exception_types limits them."""

    class PaymentError(Exception):
        pass

    retry_me = Classification(
        category=Category.SERVER, retryable=True, severity=Severity.MEDIUM, reason="gateway"
    )
    sw = _sw(patterns=[(r"card declined", retry_me, (PaymentError,))])
    assert _classify(sw, PaymentError("card declined")).reason == "gateway"
    assert _classify(sw, RuntimeError("card declined")).category is Category.UNKNOWN
    fn, calls = _raiser(PaymentError("card declined"))
    with pytest.raises(PaymentError):
        await sw.call(fn, key="pay")
    assert len(calls) == 3


def test_bad_patterns_fail_loudly() -> None:
    """An invalid regex or classification is refused at once with a message saying why."""
    sw = _sw()
    with pytest.raises(ValueError, match="not a valid regular expression"):
        sw.add_pattern("(", Classification(category=Category.CLIENT))
    with pytest.raises(TypeError, match="Classification"):
        sw.add_pattern("x", "client")  # type: ignore[arg-type]


def test_classifier_cache_is_bounded_and_counted() -> None:
    """Pattern results are cached per (type, message), up to CACHE_SIZE entries, and counted."""
    sw = _sw()
    plugin = sw.plugin_manager.get_plugin("seawall.builtin.exceptions")
    for n in range(builtin_exceptions.CACHE_SIZE + 200):
        plugin.seawall_classify(outcome=seawall.Outcome(key="k", exception=RuntimeError(f"e{n}")))
    for _ in range(5):
        plugin.seawall_classify(outcome=seawall.Outcome(key="k", exception=RuntimeError("e1200")))
    stats = sw.classifier_stats()
    assert stats["classifications"] == builtin_exceptions.CACHE_SIZE + 205
    assert stats["cache_misses"] == builtin_exceptions.CACHE_SIZE + 200
    assert stats["cache_hits"] == 5
    assert stats["category.unknown"] == builtin_exceptions.CACHE_SIZE + 205
    assert stats["cache_size"] == builtin_exceptions.CACHE_SIZE


async def test_an_inner_seawall_error_is_not_retried_by_an_outer_call() -> None:
    """An error an inner seawall raised (it already retried or refused) is not retried again."""
    inner_calls = 0

    async def inner() -> None:
        nonlocal inner_calls
        inner_calls += 1
        raise seawall.RetriesExhaustedError("inner gave up", key="inner")

    sw = seawall.Seawall(entrypoints=False)
    with pytest.raises(seawall.RetriesExhaustedError):
        await sw.call(inner, key="outer")
    assert inner_calls == 1

    async def open_inner() -> None:
        raise seawall.CircuitOpenError("inner", 3.0)

    with pytest.raises(seawall.CircuitOpenError):
        await sw.call(open_inner, key="outer2")
    # A refusal by the inner breaker is no failure of the outer key.
    assert sw.health()["keys"]["outer2"]["consecutive_failures"] == 0


_DECLINED = "card declined"


@pytest.mark.parametrize(
    ("pad", "matched"),
    [(MAX_TEXT - len(_DECLINED), True), (MAX_TEXT - len(_DECLINED) + 1, False)],
    ids=["ends-at-2000", "ends-at-2001"],
)
async def test_a_pattern_sees_the_first_2000_characters_of_a_message(
    pad: int, matched: bool
) -> None:
    """docs: patterns match the exception's text cut to its first 2000 characters."""
    declined = Classification(category=Category.CLIENT, retryable=False, reason="declined")
    sw = seawall.Seawall(patterns=[(_DECLINED, declined)], entrypoints=False)
    calls = 0

    async def pay() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionResetError("x" * pad + _DECLINED)

    policy = seawall.Policy(retry=seawall.RetryPolicy(max_attempts=3))
    with pytest.raises(ConnectionResetError):
        await sw.call(pay, key="pay", policy=policy)
    assert calls == (1 if matched else 3)  # matched: not retried; else a retried NETWORK failure


@pytest.mark.parametrize(
    ("pad", "matched"),
    [
        (MAX_TEXT - len("HTTP 500\n") - len(_DECLINED), True),
        (MAX_TEXT - len("HTTP 500\n") - len(_DECLINED) + 1, False),
    ],
    ids=["ends-at-2000", "ends-at-2001"],
)
async def test_a_pattern_sees_the_first_2000_characters_of_an_error_body(
    upstream, make_session, pad: int, matched: bool
) -> None:
    """For an error response the text is "HTTP <status>", a newline and the body, cut at 2000."""
    up, server = upstream
    up.default = status(500, "x" * pad + _DECLINED)
    declined = Classification(category=Category.CLIENT, retryable=False, reason="declined")
    policy = seawall.Policy(retry=seawall.RetryPolicy(max_attempts=3))
    sw = seawall.Seawall(policy, patterns=[(_DECLINED, declined)], entrypoints=False)
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 500
    assert up.hits == (1 if matched else 3)


@pytest.mark.parametrize(
    "message",
    [
        "auth failed",
        "Authentication failed for user",
        "not authorized",
        "token not authorised",
        "authn error",
        "Authorization header missing",
        "authenticate first",
        "AuthError: bad token",
        "auth_failure",
        "invalid api key",
    ],
)
def test_a_failed_login_in_a_message_is_authentication(message: str) -> None:
    c = builtin_exceptions.classify_exception(RuntimeError(message))
    assert c.category is Category.AUTHENTICATION
    assert c.escalate


@pytest.mark.parametrize(
    "message",
    [
        "author 12 not found",
        "certificate authority unknown",
        "no authoritative answer from the name server",
        "authority_key mismatch",
    ],
)
def test_an_author_or_an_authority_is_no_failed_login(message: str) -> None:
    """The pattern escalates to a human and is never retried: "author" and "authority" in
    a message (a lookup, a TLS or DNS error) matched it, and paged someone for nothing."""
    c = builtin_exceptions.classify_exception(RuntimeError(message))
    assert c.category is not Category.AUTHENTICATION
    assert not c.escalate


@pytest.mark.parametrize(
    "message",
    [
        "deadline exceeded",
        "DEADLINE_EXCEEDED: context deadline exceeded",
        "Deadline expired before operation could complete",
        "the request exceeded its deadline",
        "Read timed out",
    ],
)
def test_a_deadline_that_passed_is_a_timeout(message: str) -> None:
    assert builtin_exceptions.classify_exception(RuntimeError(message)).category is (
        Category.TIMEOUT
    )


@pytest.mark.parametrize(
    "message",
    ["deadline must be positive", "invalid deadline: -1", "no deadline set for job 12"],
)
def test_a_deadline_mentioned_is_no_timeout(message: str) -> None:
    """A timeout is retried up to the policy's attempts: "deadline must be positive" (the
    caller's own mistake) read as one was sent three times. Now it is an unknown error,
    retried at most once (DESIGN)."""
    c = builtin_exceptions.classify_exception(RuntimeError(message))
    assert c.category is Category.UNKNOWN
    assert c.max_retries == 1


@pytest.mark.parametrize(
    "message",
    ["resource not found", "The requested resource does not exist", "in-memory cache miss"],
)
def test_a_resource_or_memory_mentioned_is_no_exhaustion(message: str) -> None:
    """Exhaustion counts against the breaker: "resource not found" read as one, five of
    them opened the key's breaker for every caller."""
    c = builtin_exceptions.classify_exception(RuntimeError(message))
    assert c.category is not Category.RESOURCE_EXHAUSTION
