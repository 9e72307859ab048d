"""Validators and converters of the policy classes.

Every message names ``Class.field``, says what the field takes and shows what
it got: ``RetryPolicy.max_attempts must be an int >= 1, got 'three'``. A value
of the wrong type raises ``TypeError``, a value of the right type out of range
(NaN and infinities included) raises ``ValueError``. The same messages reach
Python users (at construction) and file users (``seawall.config`` adds the
location in the file).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

import attrs

from seawall.redact import redact_head, redact_text

__all__ = [
    "HTTP_METHODS",
    "boolean",
    "field_name",
    "http_method",
    "name_list",
    "number",
    "one_of",
    "optional_number",
    "show",
    "whole",
]

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]

#: Request methods of the IANA HTTP Method Registry (RFC 9110, PATCH, WebDAV and
#: friends), without ``PRI`` (HTTP/2's preface) and ``*``.
HTTP_METHODS = frozenset(
    {
        "ACL",
        "BASELINE-CONTROL",
        "BIND",
        "CHECKIN",
        "CHECKOUT",
        "CONNECT",
        "COPY",
        "DELETE",
        "GET",
        "HEAD",
        "LABEL",
        "LINK",
        "LOCK",
        "MERGE",
        "MKACTIVITY",
        "MKCALENDAR",
        "MKCOL",
        "MKREDIRECTREF",
        "MKWORKSPACE",
        "MOVE",
        "OPTIONS",
        "ORDERPATCH",
        "PATCH",
        "POST",
        "PROPFIND",
        "PROPPATCH",
        "PUT",
        "QUERY",
        "REBIND",
        "REPORT",
        "SEARCH",
        "TRACE",
        "UNBIND",
        "UNCHECKOUT",
        "UNLINK",
        "UNLOCK",
        "UPDATE",
        "UPDATEREDIRECTREF",
        "VERSION-CONTROL",
    }
)

_SHOW_MAX = 60


def show(value: Any) -> str:
    """``repr(value)``, redacted and cut short: a value pasted where another belongs (an API
    key as a route pattern, a URL with its query) must not leave through the message, and a
    fuzzed one must not flood it."""
    try:
        raw = repr(value)
    except Exception:  # a broken __repr__ of a user's object
        return f"<{type(value).__name__}>"
    if len(raw) > _SHOW_MAX:  # (a secret cut by the limit is masked, never half shown)
        return f"{redact_head(raw, _SHOW_MAX - 3)}..."
    text = redact_text(raw)
    return text if len(text) <= _SHOW_MAX else f"{text[: _SHOW_MAX - 3]}..."


def show_seconds(value: float) -> str:
    """``12.5s``; a huge wait (``recovery_timeout=1e300``) as ``1e+300s``, not 300 digits."""
    return f"{value:.1f}s" if value < 1e6 else f"{value:.3g}s"


def field_name(instance: Any, attribute: attrs.Attribute[Any]) -> str:
    """``RetryPolicy.max_attempts``."""
    return f"{type(instance).__name__}.{attribute.name}"


def _fail(kind: type[Exception], name: str, expected: str, value: Any, hint: str = "") -> NoReturn:
    msg = f"{name} must be {expected}, got {show(value)}"
    raise kind(f"{msg}; {hint}" if hint else msg)


def _is_real(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def whole(minimum: int) -> Validator:
    """An int (not a bool, not a float) at least ``minimum``."""
    expected = f"an int >= {minimum}"

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(TypeError, field_name(instance, attribute), expected, value)
        if value < minimum:
            _fail(ValueError, field_name(instance, attribute), expected, value)

    return check


def _bounds(low: float, high: float | None, strict: bool) -> str:
    if high is not None:
        return f"above {low:g} and at most {high:g}" if strict else f"between {low:g} and {high:g}"
    return f"> {low:g}" if strict else f">= {low:g}"


def _in_range(value: Any, low: float, high: float | None, strict: bool) -> bool:
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return False
    if not math.isfinite(number) or number < low or (strict and number == low):
        return False
    return high is None or number <= high


def number(
    low: float,
    *,
    high: float | None = None,
    strict: bool = False,
    unit: str = "",
    hint: str = "",
) -> Validator:
    """A finite int or float (not a bool), at least ``low`` (above it if strict), up to ``high``."""
    expected = (
        "a finite number" + (f" of {unit}" if unit else "") + " " + _bounds(low, high, strict)
    )

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not _is_real(value):
            _fail(TypeError, field_name(instance, attribute), expected, value)
        if not _in_range(value, low, high, strict):
            _fail(ValueError, field_name(instance, attribute), expected, value, hint)

    return check


def optional_number(low: float, *, strict: bool = False, unit: str = "") -> Validator:
    """``None`` (no limit), or a finite number as ``number`` checks it."""
    expected = (
        "a finite number"
        + (f" of {unit}" if unit else "")
        + f' {_bounds(low, None, strict)}, or None for no limit ("none" in a file)'
    )

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if not _is_real(value):
            _fail(TypeError, field_name(instance, attribute), expected, value)
        if not _in_range(value, low, None, strict):
            _fail(ValueError, field_name(instance, attribute), expected, value)

    return check


def boolean(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A real bool: ``"false"`` or ``0`` is an error, not a truth value."""
    if not isinstance(value, bool):
        expected = "a bool (True or False; true or false without quotes in a file)"
        _fail(TypeError, field_name(instance, attribute), expected, value)


def _close(value: str, choices: Iterable[str]) -> str:
    near = difflib.get_close_matches(value, list(choices), n=1)
    return f"did you mean {near[0]!r}?" if near else ""


def one_of(choices: Iterable[str]) -> Validator:
    """One of the given strings."""
    allowed = tuple(choices)
    expected = "one of " + ", ".join(repr(c) for c in allowed)

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, str):
            _fail(TypeError, field_name(instance, attribute), expected, value)
        if value not in allowed:
            name = field_name(instance, attribute)
            _fail(ValueError, name, expected, value, _close(value, allowed))

    return check


def name_list(
    value: Any, name: str, *, what: str, example: str, item: Callable[[Any], Any]
) -> frozenset[Any]:
    """A converter's core: one string or an iterable of items, each converted by ``item``.

    ``item`` raises ``TypeError``/``ValueError`` with its own message; bytes,
    mappings and non-iterables are refused here.
    """
    if isinstance(value, str):
        value = [value]
    if isinstance(value, bytes | bytearray | memoryview | Mapping) or not isinstance(
        value, Iterable
    ):
        _fail(TypeError, name, f"a list of {what}, e.g. {example}", value)
    return frozenset(item(v) for v in value)


def http_method(name: str) -> Callable[[Any], str]:
    """An item converter for ``name_list``: a known HTTP method, upper-cased."""

    def convert(value: Any) -> str:
        if not isinstance(value, str):
            msg = f"{name}: {show(value)} is not a method name; give strings such as 'GET'"
            raise TypeError(msg)
        method = value.strip().upper()
        if method not in HTTP_METHODS:
            hint = _close(method, HTTP_METHODS) or "use names such as 'GET' or 'POST'"
            msg = f"{name}: {show(value)} is not an HTTP method; {hint}"
            raise ValueError(msg)
        return method

    return convert
