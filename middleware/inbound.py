"""Inbound deadlines: the time budget a caller gives one request, from its headers.

Two request headers are understood:

- ``X-Request-Timeout: 2.5`` — seconds, a plain decimal number
  (``[0-9]{1,9}`` with up to 9 decimals; no sign, exponent, ``inf`` or ``nan``).
- ``grpc-timeout: 100m`` — gRPC's form: at most 8 ASCII digits and one unit,
  ``H`` hours, ``M`` minutes, ``S`` seconds, ``m`` milliseconds, ``u``
  microseconds, ``n`` nanoseconds.

A value that does not match exactly, is longer than ``MAX_HEADER_LENGTH``
bytes, or is zero, is ignored, as if absent: a hostile or broken client can
only shorten its own request's budget, never break the parsing. Zero is
ignored because some clients send ``0`` for "no timeout". When several values
are present (both headers, or one repeated), the smallest wins.

The ASGI middleware uses these with a per-app and per-route budget; the
functions are public for other servers and frameworks.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping

__all__ = [
    "GRPC_TIMEOUT",
    "MAX_HEADER_LENGTH",
    "X_REQUEST_TIMEOUT",
    "RouteBudgets",
    "check_seconds",
    "header_timeout",
    "parse_grpc_timeout",
    "parse_request_timeout",
]

#: Header names as ASGI gives them (lower-case bytes).
X_REQUEST_TIMEOUT = b"x-request-timeout"
GRPC_TIMEOUT = b"grpc-timeout"

#: Longer values are ignored unparsed.
MAX_HEADER_LENGTH = 32

_SECONDS = re.compile(rb"[0-9]{1,9}(?:\.[0-9]{1,9})?|\.[0-9]{1,9}")
_GRPC = re.compile(rb"([0-9]{1,8})([HMSmun])")
_GRPC_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}


def _clean(value: bytes | str) -> bytes | None:
    if isinstance(value, str):
        try:
            value = value.encode("ascii")
        except UnicodeEncodeError:
            return None
    if len(value) > MAX_HEADER_LENGTH:
        return None
    return value.strip(b" \t")


def parse_request_timeout(value: bytes | str) -> float | None:
    """Seconds from an ``X-Request-Timeout`` value, or ``None`` when malformed or zero."""
    text = _clean(value)
    if text is None or _SECONDS.fullmatch(text) is None:
        return None
    seconds = float(text)
    return seconds if seconds > 0 and math.isfinite(seconds) else None


def parse_grpc_timeout(value: bytes | str) -> float | None:
    """Seconds from a ``grpc-timeout`` value (``"100m"``), or ``None`` when malformed or zero."""
    text = _clean(value)
    if text is None:
        return None
    match = _GRPC.fullmatch(text)
    if match is None:
        return None
    seconds = int(match.group(1)) * _GRPC_UNITS[match.group(2)]
    return seconds if seconds > 0 else None


def header_timeout(headers: Iterable[tuple[bytes, bytes]]) -> float | None:
    """The smallest valid timeout among ASGI ``headers``, in seconds, or ``None``."""
    best: float | None = None
    for name, value in headers:
        if name == X_REQUEST_TIMEOUT:
            seconds = parse_request_timeout(value)
        elif name == GRPC_TIMEOUT:
            seconds = parse_grpc_timeout(value)
        else:
            continue
        if seconds is not None and (best is None or seconds < best):
            best = seconds
    return best


def check_seconds(name: str, value: object) -> float | None:
    """``value`` as float seconds (``None`` stays ``None``); anything but positive finite fails."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        msg = f"{name}={value!r} is not a budget; give positive seconds, e.g. 5.0, or None"
        raise ValueError(msg)
    return float(value)


class RouteBudgets:
    """An app-wide budget and per-path budgets, matched exact path first, then patterns.

    Patterns are fnmatch patterns on the request path (``"/slow/*"``), tried
    in the order given; the first match wins. A budget of ``None`` means no
    budget for that route, even when the app has one.
    """

    __slots__ = ("default", "exact", "patterns")

    def __init__(
        self, default: float | None = None, routes: Mapping[str, float | None] | None = None
    ) -> None:
        self.default = check_seconds("deadline", default)
        self.exact: dict[str, float | None] = {}
        self.patterns: list[tuple[re.Pattern[str], float | None]] = []
        for pattern, budget in (routes or {}).items():
            if not isinstance(pattern, str) or not pattern.startswith(("/", "*")):
                msg = (
                    f"route_deadlines: {pattern!r} is not a path pattern; "
                    "use e.g. '/reports' or '/slow/*'"
                )
                raise ValueError(msg)
            seconds = check_seconds(f"route_deadlines[{pattern!r}]", budget)
            if any(c in pattern for c in "*?["):
                self.patterns.append((re.compile(fnmatch.translate(pattern)), seconds))
            else:
                self.exact[pattern] = seconds

    def for_path(self, path: str) -> float | None:
        """The configured budget for ``path``, in seconds, or ``None``."""
        if path in self.exact:
            return self.exact[path]
        for regex, seconds in self.patterns:
            if regex.match(path):
                return seconds
        return self.default
