"""Inbound deadlines: timeout headers (including hostile values) and route budgets."""

from __future__ import annotations

import math

import pytest

from seawall.inbound import (
    RouteBudgets,
    header_timeout,
    parse_grpc_timeout,
    parse_request_timeout,
)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2.5", 2.5),
        ("10", 10.0),
        (".5", 0.5),
        (" 3 ", 3.0),
        (b"0.25", 0.25),
        ("999999999.999999999", 999999999.999999999),
    ],
)
def test_request_timeout_valid(value: str | bytes, seconds: float) -> None:
    """A plain decimal number of seconds is read as it is."""
    assert parse_request_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "abc",
        "-1",
        "+1",
        "1e3",
        "1E-3",
        "inf",
        "Infinity",
        "nan",
        "NaN",
        "0",
        "0.000",
        "1_000",
        "0x10",
        "1.2.3",
        "1.",
        "1,5",
        "\u0663",  # ARABIC-INDIC DIGIT THREE: float() would accept it
        "1234567890",  # ten digits
        "9" * 40,
        "1\x00",
        "\u00e9",
    ],
)
def test_request_timeout_hostile_values_are_ignored(value: str) -> None:
    """Anything but a positive plain decimal (signs, exponents, inf, nan, huge) is absent."""
    assert parse_request_timeout(value) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("100m", 0.1),
        ("2S", 2.0),
        ("500u", 0.0005),
        ("25000000n", 0.025),
        ("3M", 180.0),
        ("1H", 3600.0),
        ("12345678S", 12345678.0),
        (b"5S", 5.0),
    ],
)
def test_grpc_timeout_valid(value: str | bytes, seconds: float) -> None:
    """gRPC's digits-and-unit form is read in every unit H M S m u n."""
    assert parse_grpc_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["123456789S", "100", "100ms", "1s", "1h", "-1S", "1.5S", "0S", "0n", "S", "1 S", "", "1SS"],
)
def test_grpc_timeout_malformed_values_are_ignored(value: str) -> None:
    """More than 8 digits, an unknown unit, a sign, a fraction or zero is absent."""
    assert parse_grpc_timeout(value) is None


def test_smallest_header_value_wins() -> None:
    """With both headers, repeated ones and malformed ones, the smallest valid value wins."""
    headers = [
        (b"x-request-timeout", b"5"),
        (b"grpc-timeout", b"2S"),
        (b"x-request-timeout", b"nan"),
        (b"x-request-timeout", b"3"),
        (b"grpc-timeout", b"0S"),
        (b"timeout", b"0.001"),
    ]
    assert header_timeout(headers) == 2.0
    assert header_timeout([(b"x-request-timeout", b"-1")]) is None
    assert header_timeout([]) is None


def test_route_budgets_exact_first_then_patterns_in_order() -> None:
    """An exact path beats a pattern, the first matching pattern wins, None disables."""
    budgets = RouteBudgets(
        1.0,
        {"/slow/*": 10.0, "/slow/report": 30.0, "/slow/re*": 20.0, "/stream/*": None},
    )
    assert budgets.for_path("/slow/report") == 30.0
    assert budgets.for_path("/slow/results") == 10.0
    assert budgets.for_path("/stream/x") is None
    assert budgets.for_path("/other") == 1.0
    assert RouteBudgets().for_path("/") is None


@pytest.mark.parametrize(
    ("default", "routes"),
    [
        (-1.0, None),
        (0, None),
        (math.nan, None),
        (math.inf, None),
        (True, None),
        ("5", None),
        (None, {"slow/*": 1.0}),
        (None, {"/slow": -2.0}),
    ],
)
def test_route_budgets_reject_bad_configuration(default: object, routes: object) -> None:
    """A budget that is not positive finite seconds, or a pattern that is not a path, fails."""
    with pytest.raises(ValueError, match=r"give positive seconds|not a path pattern"):
        RouteBudgets(default, routes)  # type: ignore[arg-type]
