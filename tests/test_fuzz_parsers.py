"""Property-based tests of every parser of what a server or client sends.

Each parser must never raise on any value a header (or a body) can carry,
must answer ``None`` or a finite, non-negative number (within the bound its
docs promise), and must read back the valid values generated here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import json
import math
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from seawall.costs import MAX_TOKENS, StreamUsage, usage_from_json
from seawall.inbound import (
    GRPC_TIMEOUT,
    MAX_HEADER_LENGTH,
    X_REQUEST_TIMEOUT,
    header_timeout,
    parse_grpc_timeout,
    parse_request_timeout,
)
from seawall.llm import (
    MODEL_BODY_LIMIT,
    model_from_json,
    parse_duration,
    parse_timestamp,
    rate_info,
    reset_wait,
)
from seawall.llm.usage import MODEL_NAME_MAX
from seawall.plugins.builtin.llm import classify_error, error_code
from seawall.retry_after import parse_retry_after, server_wait, should_retry_header

# Modest and quiet: no example database written into the tree, no timing deadline
# (the suite runs on a loaded 2-core machine).
FUZZ = settings(max_examples=100, deadline=None, database=None)
NOW = 1_700_000_000.0  # a fixed "now", so dates are deterministic

# Header values: any text, text near the valid forms, and latin-1 bytes decoded
# as aiohttp does; names: the ones seawall reads, in any case, and others.
_NEAR_NUMBER = st.from_regex(
    r"\A[ \t]*[-+.]?[0-9]{0,12}([.,eE_][-+0-9]{0,6})?[a-zA-Z]{0,3}[ \t]*\Z"
)
_NEAR_DATE = st.from_regex(
    r"\A(Mon|Tue|Sun|xx), ?[0-9]{1,4} (Jan|Feb|Dec|Foo) [0-9]{1,12} "
    r"[0-9:]{0,9} ?(GMT|UTC|\+[0-9]{4}|)\Z"
)
_NEAR_ISO = st.from_regex(
    r"\A[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}([T ][0-9:.]{0,15})?(Z|[+-][0-9:]{1,6})?\Z"
)
VALUES = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
    _NEAR_NUMBER,
    _NEAR_DATE,
    _NEAR_ISO,
    st.sampled_from(["inf", "nan", "-0", "1e999", "\u0661", "\uff11", "0x10", "1_000", "true"]),
)
HEADER_NAMES = [
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-remaining",
    "anthropic-ratelimit-output-tokens-reset",
]
HEADERS = st.dictionaries(st.sampled_from(HEADER_NAMES), VALUES, max_size=6)


def _none_or_finite(value: float | None, *, upto: float = math.inf) -> bool:
    return value is None or (
        isinstance(value, float | int) and math.isfinite(value) and 0 <= value <= upto
    )


# --- Retry-After, retry-after-ms, x-should-retry -----------------------------------


@FUZZ
@given(VALUES)
@example("Sun, 06 Nov 1994 08:49:37 GMT")
@example("Fri, 31 Dec 9999 23:59:59 GMT")
@example("Mon, 01 Jan 0001 00:00:00 +0000")
@example("Tue, 1 Jan 99999 00:00:00 GMT")
@example("Mon, 01 Jan 99999999999 00:00:00 GMT")  # raised OverflowError
def test_retry_after_never_raises(value: str) -> None:
    assert _none_or_finite(parse_retry_after(value, now=NOW))
    assert _none_or_finite(parse_retry_after(value))


@FUZZ
@given(HEADERS)
def test_server_wait_and_should_retry_never_raise(headers: dict[str, str]) -> None:
    assert _none_or_finite(server_wait(headers, now=NOW))
    assert should_retry_header(headers) in (None, True, False)


@FUZZ
@given(
    st.integers(0, 10**12),
    st.one_of(st.none(), st.integers(0, 999_999)),
    st.sampled_from(["", " ", "\t"]),
)
def test_retry_after_seconds_round_trip(whole: int, fraction: int | None, pad: str) -> None:
    text = f"{whole}" if fraction is None else f"{whole}.{fraction}"
    assert parse_retry_after(f"{pad}{text}{pad}") == float(text)
    assert server_wait({"retry-after-ms": text}) == float(text) / 1000


@FUZZ
@given(st.integers(int(NOW) - 10**8, int(NOW) + 10**8))
def test_retry_after_dates_round_trip(moment: int) -> None:
    value = email.utils.formatdate(moment, usegmt=True)
    assert parse_retry_after(value, now=NOW) == max(0.0, moment - NOW)


@FUZZ
@given(st.sampled_from(["true", "false"]), st.sampled_from([str.upper, str.title, str.lower]))
def test_should_retry_round_trip(word: str, case: Any) -> None:
    assert should_retry_header({"x-should-retry": f" {case(word)} "}) is (word == "true")


# --- inbound deadlines: X-Request-Timeout, grpc-timeout ---------------------------

_LARGEST_REQUEST_TIMEOUT = 1e9  # [0-9]{1,9} with a fraction
_LARGEST_GRPC = 99_999_999 * 3600.0  # 8 digits of hours

RAW = st.one_of(VALUES, st.binary(max_size=40), st.from_regex(rb"\A[0-9]{1,10}[HMSmunx]?\Z"))


@FUZZ
@given(RAW)
def test_inbound_deadlines_never_raise(value: str | bytes) -> None:
    seconds = parse_request_timeout(value)
    assert seconds is None or 0 < seconds <= _LARGEST_REQUEST_TIMEOUT
    seconds = parse_grpc_timeout(value)
    assert seconds is None or 0 < seconds <= _LARGEST_GRPC


@FUZZ
@given(
    st.lists(
        st.tuples(st.sampled_from([X_REQUEST_TIMEOUT, GRPC_TIMEOUT, b"x"]), st.binary(max_size=40)),
        max_size=6,
    )
)
def test_header_timeout_is_the_smallest_valid_value(headers: list[tuple[bytes, bytes]]) -> None:
    parsed = [
        parse_request_timeout(v) if n == X_REQUEST_TIMEOUT else parse_grpc_timeout(v)
        for n, v in headers
        if n in (X_REQUEST_TIMEOUT, GRPC_TIMEOUT)
    ]
    valid = [s for s in parsed if s is not None]
    assert header_timeout(headers) == (min(valid) if valid else None)


@FUZZ
@given(st.integers(1, 10**8 - 1), st.sampled_from(["H", "M", "S", "m", "u", "n"]))
def test_grpc_timeout_round_trip(amount: int, unit: str) -> None:
    scale = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}[unit]
    assert parse_grpc_timeout(f"{amount}{unit}") == amount * scale
    assert parse_grpc_timeout(f" {amount}{unit} ".encode()) == amount * scale


@FUZZ
@given(st.integers(0, 10**9 - 1), st.one_of(st.none(), st.integers(0, 10**9 - 1)))
def test_request_timeout_round_trip(whole: int, fraction: int | None) -> None:
    text = f"{whole}" if fraction is None else f"{whole}.{fraction}"
    expected = float(text)
    assert len(text) <= MAX_HEADER_LENGTH
    assert parse_request_timeout(text) == (expected if expected > 0 else None)


# --- LLM rate-limit headers ---------------------------------------------------------


@FUZZ
@given(HEADERS)
def test_rate_limit_headers_never_raise(headers: dict[str, str]) -> None:
    info = rate_info(headers, now=NOW)
    if info is not None:
        assert 0 <= info.remaining <= info.limit
        assert _none_or_finite(info.reset)
        assert _none_or_finite(info.rate)
    assert _none_or_finite(reset_wait(headers, now=NOW))


@FUZZ
@given(VALUES)
@example("9999-12-31T23:59:59+00:00")
@example("0001-01-01T00:00:00-23:59")
def test_durations_and_timestamps_never_raise(value: str) -> None:
    assert _none_or_finite(parse_duration(value))
    assert _none_or_finite(parse_timestamp(value, now=NOW))


@FUZZ
@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999))
def test_duration_round_trip(hours: int, minutes: int, seconds: int, millis: int) -> None:
    text = f"{hours}h{minutes}m{seconds}s{millis}ms"
    expected = hours * 3600 + minutes * 60 + seconds + millis / 1000
    assert math.isclose(parse_duration(text) or 0.0, expected)
    assert parse_duration(f"{seconds}.5s") == seconds + 0.5


@FUZZ
@given(
    st.datetimes(dt.datetime(1971, 1, 1), dt.datetime(9000, 1, 1)),
    st.sampled_from(
        [dt.UTC, dt.timezone(dt.timedelta(hours=-5)), dt.timezone(dt.timedelta(hours=9))]
    ),
)
def test_timestamp_round_trip(moment: dt.datetime, zone: dt.tzinfo) -> None:
    stamp = moment.replace(tzinfo=zone)
    text = stamp.isoformat().replace("+00:00", "Z")
    assert parse_timestamp(text, now=NOW) == max(0.0, stamp.timestamp() - NOW)


# --- bodies: the model of a request, the usage and error code of an answer ---------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
_KEYS = st.sampled_from(
    [
        "model",
        "usage",
        "object",
        "type",
        "error",
        "code",
        "message",
        "response",
        "prompt_tokens",
        "completion_tokens",
        "input_tokens",
        "output_tokens",
    ]
)
LLM_JSON = st.recursive(
    JSON_VALUES,
    lambda inner: st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=25,
)
BODIES = st.one_of(
    st.binary(max_size=200),
    LLM_JSON.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(
        [
            b"{" * 20_000,
            b'{"model": NaN}',
            b'{"model": "a", "usage": {"prompt_tokens": Infinity}}',
            b'{"model": "' + b"m" * 300 + b'", "usage": {"prompt_tokens": 1}}',
            b'{"model": "a", "usage": {"prompt_tokens": 1, '
            b'"prompt_tokens_details": {"cached_tokens": 2}}}',
        ]
    ),
)


@FUZZ
@given(BODIES)
@example(b'{"model": "' + b"m" * 300 + b'", "usage": {"prompt_tokens": 1}}')
@example(
    b'{"model": "a", "usage": {"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 2}}}'
)
def test_body_parsers_never_raise(body: bytes) -> None:
    model = model_from_json(body)
    assert model is None or (0 < len(model) <= 100 and model.isascii())
    usage = usage_from_json(body)
    if usage is not None:
        counts = (
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
        )
        assert all(isinstance(n, int) and 0 <= n <= MAX_TOKENS for n in counts)
        assert usage.cache_read_tokens + usage.cache_write_tokens <= usage.input_tokens
        assert 0 < len(usage.model) <= MODEL_NAME_MAX
    done: list[Any] = []
    tap = StreamUsage(done.append)
    for start in range(0, len(body), 17):
        tap(b"data: " + body[start : start + 17] + b"\n")
    tap(b"data: " + body + b"\n")
    tap(b"")
    decoded = None
    with contextlib.suppress(ValueError, RecursionError):
        decoded = json.loads(body)
    assert error_code(decoded) is None or isinstance(error_code(decoded), str)


@FUZZ
@given(st.one_of(st.none(), st.integers(100, 599)), LLM_JSON, HEADERS)
def test_llm_error_classification_never_raises(
    status: int | None, body: Any, headers: dict[str, str]
) -> None:
    result = classify_error(status, body, headers)
    assert result is None or _none_or_finite(result.retry_after)


@FUZZ
@given(
    st.from_regex(r"\A[A-Za-z0-9._:/@+-]{1,100}\Z"),
    st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3),
)
def test_model_round_trip(name: str, other: dict[str, Any]) -> None:
    body = json.dumps({**other, "model": name}).encode()
    assert model_from_json(body) == name
    assert model_from_json(b" \n" + body) == name
    assert model_from_json(b"x" * (MODEL_BODY_LIMIT + 1)) is None
