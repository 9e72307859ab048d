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
import re
import unicodedata
import urllib.parse
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
    "route_is_url",
    "route_map",
    "route_unseen",
    "route_with_path",
    "show",
    "unseen",
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


def _host_of(url: str) -> str:
    """What a route for ``url`` is written as: ``host``, or ``host:port`` if it names a port."""
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number
        return "api.example.com"
    if not host:
        return "api.example.com"
    return f"{host}:{port}" if port is not None else host


def route_is_url(pattern: str) -> str | None:
    """Why a route pattern written as a URL can never match, and what to write; else ``None``.

    Routes are matched against a request's host (``host:port`` for a pattern
    with a ``:``) and against ``sw.call`` keys. A host never holds ``://``; a
    route that does is far likelier a URL meant as a host than an ``sw.call``
    key, so it is refused rather than silently never applied.
    """
    if "://" not in pattern:
        return None
    host = _host_of(pattern)
    return (
        f"route pattern {show(pattern)} is a URL, so it would never match: routes match "
        f"a request's host (or host:port), never its scheme or path; write {host!r}"
    )


#: The likeliest ways a refused character got into a pattern or a key, as a message says.
_PASTED = "(a pasted escape sequence or a newline from a heredoc?)"
_SHOWS_AS_NOTHING = "(it shows as nothing: pasted from a web page or a document?)"
_SHOWS_AS_A_SPACE = "(it shows as a space and is not one: pasted from a web page or a document?)"
_BREAKS_A_LINE = "(it breaks the line, or shows as nothing: pasted from a document?)"


def _span(low: int, high: int) -> str:
    return "".join(map(chr, range(low, high + 1)))


#: What no host or key is written with, by what a message calls each one and how it
#: likely came in: C0 controls, DEL and C1 controls; the bidi overrides and isolates;
#: the bidi marks (LRM, RLM, ALM); the zero-width characters (space, non-joiner,
#: joiner, word joiner, U+FEFF); the line and paragraph separators; the no-break
#: space, which is written as an ordinary space. No host holds one (IDNA2008
#: disallows them all, but for the joiners below), and a key holding one reads as
#: another. Each is one ``str.isprintable`` refuses, so printable text is passed
#: without a search.
_KINDS = (
    ("the control character", _PASTED, _span(0x00, 0x1F) + _span(0x7F, 0x9F)),
    ("the bidi control", _PASTED, _span(0x202A, 0x202E) + _span(0x2066, 0x2069)),
    ("the bidi mark", _SHOWS_AS_NOTHING, "\u200e\u200f\u061c"),
    ("the zero-width character", _SHOWS_AS_NOTHING, "\u200b\u200c\u200d\u2060\ufeff"),
    ("the separator", _BREAKS_A_LINE, "\u2028\u2029"),
    ("the no-break space", _SHOWS_AS_A_SPACE, "\xa0"),
)
_KIND_OF = {char: (kind, hint) for kind, hint, chars in _KINDS for char in chars}
_UNSEEN = re.compile(f"[{re.escape(''.join(_KIND_OF))}]")

#: The zero-width non-joiner and joiner are taken between two non-ASCII letters,
#: marks or symbols: Persian and Indic words and emoji sequences are written with
#: them, and IDNA2008 allows them in a host label there only (RFC 5892, CONTEXTJ:
#: after a virama, or between joining letters). Anywhere else they change nothing
#: shown, and are refused.
_JOINERS = frozenset("\u200c\u200d")


def _joins(char: str) -> bool:
    return not char.isascii() and unicodedata.category(char)[0] in "LMS"


def _refused(text: str, index: int) -> bool:
    """Whether ``text[index]`` (one of ``_KIND_OF``) is refused where it stands."""
    if text[index] not in _JOINERS:
        return True
    return not (0 < index < len(text) - 1 and _joins(text[index - 1]) and _joins(text[index + 1]))


def _without(text: str, refused: list[int]) -> str:
    """``text`` as it is meant: the refused characters dropped, a no-break space a space."""
    chars = list(text)
    for index in refused:
        chars[index] = " " if text[index] == "\xa0" else ""
    return "".join(chars).strip()


def unseen(text: str, example: str) -> str | None:
    """What control, bidi or invisible character ``text`` holds and what to write instead.

    ``"it holds the control character '\\x1b' (U+001B) at index 4 (...); write 'x.com'"``,
    ``"it holds the zero-width character U+200B (ZERO WIDTH SPACE) at index 3 (...)"``:
    the character escaped or named, never itself (a message that echoed it would drive
    the terminal it is shown on, or hide what is wrong); ``example`` is offered when
    nothing else is left. ``None`` when ``text`` holds none.
    """
    if text.isprintable():  # the common case, without a search
        return None
    refused = [m.start() for m in _UNSEEN.finditer(text) if _refused(text, m.start())]
    if not refused:
        return None
    char = text[refused[0]]
    kind, hint = _KIND_OF[char]
    code = f"U+{ord(char):04X}"
    what = (
        f"{char!r} ({code})"
        if kind == "the control character"
        else f"{code} ({unicodedata.name(char)})"
    )
    more = f" and {len(refused) - 1} more" if len(refused) > 1 else ""
    rest = _without(text, refused)
    return (
        f"it holds {kind} {what} at index {refused[0]}{more} {hint}; "
        f"write {show(rest) if rest else example}"
    )


def route_unseen(pattern: str) -> str | None:
    """Why a route pattern holding a control, bidi or invisible character is refused; else ``None``.

    No host holds one, so the route's policy would never be applied, and nothing
    would say why.
    """
    why = unseen(pattern, "the host alone, e.g. 'api.example.com'")
    return None if why is None else f"route pattern {show(pattern)} would never match a host: {why}"


def route_with_path(pattern: str) -> str | None:
    """Why a route pattern with a ``/`` (and no ``://``) matches no host, else ``None``.

    Only a warning: such a pattern is still a valid ``sw.call`` key.
    """
    if "/" not in pattern or "://" in pattern:
        return None
    host = pattern.split("/", 1)[0] or "api.example.com"
    return (
        f"route pattern {show(pattern)} contains '/': routes match a request's host "
        f"(host:port), never its path, so it can only match an sw.call key; for a host, "
        f"write {host!r}"
    )


def route_map(routes: Any) -> Mapping[Any, Any]:
    """``Seawall(routes=...)`` checked: a mapping, no pattern a URL or with an unseen character.

    The patterns' and policies' types are checked by the registry.
    """
    if routes is None:
        return {}
    if not isinstance(routes, Mapping):
        msg = (
            "Seawall(routes=...) takes a mapping of host pattern to seawall.Policy, "
            f"e.g. {{'api.example.com': Policy(...)}}, not {show(routes)}"
        )
        raise TypeError(msg)
    for pattern in routes:
        why = (route_is_url(pattern) or route_unseen(pattern)) if isinstance(pattern, str) else None
        if why is not None:
            msg = f"Seawall(routes=...): {why}"
            raise ValueError(msg)
    return routes
