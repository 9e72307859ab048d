"""Property tests of the ``seawall`` command's parsers and of what it writes to a terminal.

Each parser answers its documented error or a value for any text, and the
terminal filter lets no control or format character through (fifth audit).
"""

from __future__ import annotations

import argparse
import unicodedata
from collections.abc import Callable
from typing import TypeVar

from hypothesis import given
from hypothesis import strategies as st

from seawall.cli.classify import (
    build_exception,
    parse_header,
    parse_method,
    parse_status,
    parse_url,
)
from seawall.cli.locate import find_line, split_location
from seawall.cli.terminal import terminal_safe

#: Text with the characters that break terminals and parsers drawn often.
HOSTILE = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.sampled_from(
            ["\x1b", "\x07", "\x9b", "\u202e", "\u2066", "\u2028", "\xa0", ":", "@", "?", "\n", "="]
        ),
    ),
    max_size=60,
)

T = TypeVar("T")


#: What a terminal is never given raw: controls, format characters, line and paragraph
#: separators, spaces (but newlines, tabs and U+0020).
ESCAPED = {"Cc", "Cf", "Zl", "Zp", "Zs"}


@given(HOSTILE)
def test_terminal_safe_lets_no_control_or_format_character_through(text: str) -> None:
    """Only newlines, tabs and spaces of the Cc/Cf/Zl/Zp/Zs characters survive; the rest
    is escaped (U+2028, U+2029 and U+00A0 too, since fix/invisible)."""
    shown = terminal_safe(text)
    assert all(c in "\n\t " or unicodedata.category(c) not in ESCAPED for c in shown)
    if all(c in "\n\t " or unicodedata.category(c) not in ESCAPED for c in text):
        assert shown == text


def _answer(parse: Callable[[str], T], text: str, error: type[Exception]) -> T | str:
    """``parse(text)``, or the message of the ``error`` it raised (any other escapes)."""
    try:
        return parse(text)
    except error as exc:
        return f"error: {exc}"


@given(HOSTILE)
def test_parse_method_gives_a_token_or_a_usage_error(text: str) -> None:
    """A method is upper-case token characters, or argparse's usage error."""
    method = _answer(parse_method, text, argparse.ArgumentTypeError)
    if method.startswith("error: "):
        assert "\x1b" not in method
    else:
        assert method == text.upper()
        assert method.isascii()
        assert method.isprintable()
        assert " " not in method


@given(HOSTILE)
def test_parse_status_and_url_give_a_value_or_a_usage_error(text: str) -> None:
    """--status and --url raise only argparse's usage error."""
    status = _answer(parse_status, text, argparse.ArgumentTypeError)
    assert isinstance(status, str) or 100 <= status <= 599
    url = _answer(parse_url, text, argparse.ArgumentTypeError)
    if url.startswith("error: "):  # never the credentials before an '@'
        assert "@" not in url.split(" is not")[0]
    else:
        assert url == text


@given(HOSTILE)
def test_parse_header_and_build_exception_raise_only_value_errors(text: str) -> None:
    """--header and --exception give a value or a ValueError that says how to write it."""
    header = _answer(parse_header, text, ValueError)
    assert "--header" in header if isinstance(header, str) else header[0]
    built = _answer(build_exception, text, ValueError)
    assert "--exception" in built if isinstance(built, str) else isinstance(built, BaseException)


@given(HOSTILE, HOSTILE)
def test_finding_a_problem_line_never_raises(text: str, location: str) -> None:
    """`seawall check` locates any problem in any text, or says it cannot."""
    line = find_line(text, location)
    assert line is None or 1 <= line <= max(1, len(text.splitlines()))
    assert isinstance(split_location(location), list)


def test_a_quoted_table_is_found_however_the_file_escapes_its_name() -> None:
    """A location writes a name as JSON does (``\\u001b``); the file may write ``\\u001B``,
    the character itself (a bidi control is allowed raw in TOML), or hold a ']' in it."""
    text = '[routes."a"]\n[routes."b\\u001B"]\n[routes."c\u202ed"]\n[routes."e]f"]\n'
    assert find_line(text, 'routes."b\\u001b"') == 2
    assert find_line(text, 'routes."c\\u202ed"') == 3
    assert find_line(text, 'routes."e]f".retry') == 4
    assert find_line(text, 'routes."a\\u"') == 1  # not valid JSON: taken as written
