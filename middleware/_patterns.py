"""What a route pattern and a ``Policy.key`` may be: no URL, no unseen character.

A route pattern is matched against a request's host (``host:port`` for a pattern
with a ``:``) and against ``sw.call`` keys; one that no host can be (a URL, a
pasted escape sequence, a zero-width space) would silently never apply its
policy, so it is refused with what to write instead. ``Policy.key`` refuses the
same characters (``seawall.policy_fields.key_choice``). The messages show the
pattern with ``seawall._checks.show``: escaped and redacted, never raw.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from collections.abc import Mapping
from typing import Any

from seawall._checks import show

__all__ = ["route_is_url", "route_map", "route_unseen", "route_with_path", "unseen"]


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
    """``Seawall(routes=...)`` checked: a mapping, no URL, no unseen character.

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
