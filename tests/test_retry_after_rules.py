"""The edges of reading a server's wait hints (``seawall.retry_after``), as plain functions."""

from __future__ import annotations

import email.utils

import pytest

from seawall.retry_after import parse_retry_after, server_wait

#: 2015-10-21 07:28:00 GMT as a Unix time.
OCT_21 = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()


def test_a_value_of_64_characters_is_read_and_one_of_65_is_not() -> None:
    """64 characters is the longest ``Retry-After`` looked at (leading zeros count)."""
    assert parse_retry_after("0" * 63 + "5") == 5.0
    assert parse_retry_after("0" * 64 + "5") is None
    assert parse_retry_after("0" * 62 + "5") == 5.0


def test_retry_after_ms_of_64_characters_is_read_and_one_of_65_falls_back() -> None:
    """An over-long ``retry-after-ms`` is ignored and ``Retry-After`` is used instead."""
    assert server_wait({"retry-after-ms": "0" * 61 + "250"}) == 0.25
    assert server_wait({"retry-after-ms": "0" * 62 + "250", "retry-after": "3"}) == 3.0


@pytest.mark.parametrize(
    "value", ["-Wed, 21 Oct 2015 07:28:00 GMT", "+21 Oct 2015 07:28:00 GMT", ".5"]
)
def test_a_value_starting_with_a_sign_or_a_dot_is_neither_a_number_nor_a_date(value: str) -> None:
    """The standard library would read these dates; a header starting so is malformed."""
    assert parse_retry_after(value, now=OCT_21 - 10) is None


def test_a_date_with_a_numeric_zone_is_a_date() -> None:
    """A date ending in a digit (``+0000``) is still read as a date, not a number."""
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 +0000", now=OCT_21 - 10) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=OCT_21 - 2.5) == 2.5
