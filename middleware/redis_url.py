"""Whether a Redis URL (``Seawall(state=...)``, ``[state] url``) can be used, and what to fix.

The check reads the URL as redis-py will (``urllib.parse``), so that a URL it
would misread is refused with the fix, before a process starts with it: a
password holding ``/``, ``?`` or ``#`` ends the host part early (redis-py then
connects elsewhere and quotes a piece of the password in its errors). The
messages never quote the URL: it may hold a password.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["REFRESH_MAX", "SCHEMES", "TIMEOUT_MAX", "redis_url_problem", "state_option_problem"]

#: The URL schemes a fleet's state accepts.
SCHEMES = ("redis", "rediss", "unix", "valkey", "valkeys")

_EXAMPLE = "'redis://127.0.0.1:6379/0' (or rediss://, unix:///path/redis.sock)"


def redis_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a Redis URL and how to fix it; ``None``: usable."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        return f"must be a Redis URL such as {_EXAMPLE}"
    authority_end = min((rest.find(c) for c in "/?#" if c in rest), default=len(rest))
    if "@" in rest[authority_end:] and scheme.lower() != "unix":
        return (
            "has a '/', '?' or '#' before its '@': percent-encode them in the password "
            "(%2F, %3F, %23), or the host is read from the password"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "has a port that is not a number in 1-65535: give e.g. 'redis://host:6379/0'"
    if scheme.lower() == "unix":
        if not parts.path:
            return "gives no socket path: give e.g. 'unix:///run/redis/redis.sock'"
        return None
    if not parts.hostname:
        return f"gives no host: give e.g. {_EXAMPLE}"
    if port == 0:
        return "has port 0: give the port Redis listens on, e.g. 'redis://host:6379/0'"
    db = parts.path.strip("/")
    if db and not (db.isdigit() and db.isascii()):
        return "has a database that is not a number: give e.g. 'redis://host:6379/0'"
    return None


#: The most seconds a fleet's Redis round trip may be given (``[state] timeout``).
TIMEOUT_MAX = 1.0

#: The most seconds between two reads of the fleet's state (``[state] refresh``).
REFRESH_MAX = 5.0


def state_option_problem(name: str, value: object) -> str | None:
    """What is wrong with ``[state] <name> = value`` (prefix, timeout, refresh); ``None``: usable.

    The same bounds ``seawall.fleet`` enforces when the store is built, so that
    ``seawall check`` refuses what ``Seawall.from_file`` would.
    """
    if name == "prefix":
        if not isinstance(value, str) or not value or "{" in value or "}" in value:
            return "must be a non-empty string without braces, e.g. 'myapp'"
        return None
    top = {"timeout": TIMEOUT_MAX, "refresh": REFRESH_MAX}[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number of seconds above 0 and at most {top:g}"
    if not 0 < value <= top:  # (NaN too)
        hint = " (tens of ms: seawall falls back to local state when Redis is slow)"
        return f"must be seconds above 0 and at most {top:g}" + (hint if name == "timeout" else "")
    return None
