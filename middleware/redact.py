"""Keeping secrets inside the process: redacted URLs, headers and text.

Every event, incident, log line and error message seawall builds goes
through these functions; an exception becomes text only through
``exception_str``, ``exception_repr`` and ``describe_exception``, which never
raise (an exception's ``__str__`` or ``__repr__`` is anyone's code).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

from yarl import URL

__all__ = [
    "HEAD_MARGIN",
    "MASK",
    "SECRET_HEADERS",
    "SECRET_PARAMS",
    "describe_exception",
    "exception_repr",
    "exception_str",
    "is_secret_header",
    "is_secret_param",
    "redact_head",
    "redact_headers",
    "redact_key",
    "redact_text",
    "redact_url",
]

MASK = "***"

#: Header names whose values are never shown (compared lower-case).
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "api-key",
        "x-api-key",
        "anthropic-api-key",
        "openai-api-key",
        "x-goog-api-key",
        "x-amz-security-token",
        "x-auth-token",
        "x-csrf-token",
    }
)

#: Query parameter names whose values are never shown (compared lower-case).
SECRET_PARAMS = frozenset(
    {
        "key",
        "api_key",
        "apikey",
        "api-key",
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "auth",
        "sig",
        "signature",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "session",
        "sid",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "code",
        "otp",
        "pin",
        "sas",
    }
)

#: Parts of a header or parameter name that mark its value secret (``sessionid``, ``jwt``,
#: ``pwd``, ``x-session-cookie``, a CAS ``ticket``, an OAuth ``client_assertion``, an
#: ``x-hmac`` or ``passcode``): masking a harmless value costs nothing.
_SECRETISH = re.compile(
    r"(key|token|secret|passw|passc|pwd|signature|credential|auth|session|jwt|cookie|ticket"
    r"|assertion|hmac|bearer|private)",
    re.IGNORECASE,
)


def is_secret_header(name: str) -> bool:
    """True for headers whose value must not leave the process."""
    lowered = name.lower()
    return lowered in SECRET_HEADERS or bool(_SECRETISH.search(lowered))


def is_secret_param(name: str) -> bool:
    """True for query parameters whose value must not leave the process."""
    lowered = name.lower()
    return lowered in SECRET_PARAMS or bool(_SECRETISH.search(lowered))


def redact_url(url: URL | str | None) -> URL | None:
    """The URL with credentials and key-like query values masked."""
    if url is None:
        return None
    if not isinstance(url, URL):
        try:
            url = URL(url)
        except (TypeError, ValueError):
            return URL(MASK)
    if url.user is not None or url.password is not None:
        url = url.with_user(None)
    if url.query_string and any(is_secret_param(k) for k in url.query):
        query = [(k, MASK if is_secret_param(k) else v) for k, v in url.query.items()]
        url = url.with_query(query)
    return url


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """A plain dict copy of ``headers`` with secret values masked."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k: (MASK if is_secret_header(k) else v) for k, v in items}


# Things that look like keys wherever they appear in free text. The ``*_CUT``
# twins read a text cut short (``redact_head``): a value still open where the
# text ends (no closing quote or ``@`` yet, a key shorter than its minimum) is
# taken to end there and masked, never half shown.
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
#: The ``Token`` scheme (GitHub's, Django REST framework's): "token" is also a
#: word, so only a run of 16 or more key-like characters holding a digit after
#: it is taken for a credential ("token bucket" stays).
_TOKEN = re.compile(r"(?i)\b(token)\s+(?=[A-Za-z0-9._~+/=-]*[0-9])[A-Za-z0-9._~+/=-]{16,}")
_TOKEN_CUT = re.compile(
    r"(?i)\b(token)\s+(?:(?=[A-Za-z0-9._~+/=-]*[0-9])[A-Za-z0-9._~+/=-]{16,}|[A-Za-z0-9._~+/=-]+\Z)"
)
_KEYS = re.compile(r"\b(?:sk-ant|sk|pk|rk)-[A-Za-z0-9_-]{8,}")
_KEYS_CUT = re.compile(r"\b(?:sk-ant|sk|pk|rk)-(?:[A-Za-z0-9_-]{8,}|[A-Za-z0-9_-]*\Z)")
#: ``?name=value`` and ``&name=value`` in URLs; the name decides.
_QUERY = re.compile(r"([?&;])([^=&#\s'\"?;]{1,64})=([^&#\s'\"]*)")
#: URL credentials: ``//user:password@`` (the password may hold an unencoded
#: ``/``, ``?`` or ``#``, as base64 ones do) or ``//user@`` (a token as user
#: name). As RFC 3986 reads a URL, 1 to 5 digits after the colon and then
#: ``/``, ``?`` or ``#`` are a port, not a password (``//svc:8080/x?email=a@b``
#: keeps its host, as yarl parses it); a URL that never reaches an ``@`` is
#: left alone; ``host:name/path@x`` is over-masked, the price of it. A
#: password is read to the next ``//`` possessively (linear in the text's
#: length), or, holding ``//`` itself, at most ``_USERINFO_MAX`` characters.
_USERINFO_MAX = 128
_USERINFO_HEAD = (
    r"(//)(?:[^/@\s:]*:(?![0-9]{1,5}[/?#])(?:(?:[^@\s/]|/(?!/))*+|[^@\s]{0,"
    + str(_USERINFO_MAX)
    + r"}+)|[^/@\s:]+)"
)
_USERINFO = re.compile(_USERINFO_HEAD + "@")
_USERINFO_CUT = re.compile(_USERINFO_HEAD + r"(?:@|\Z)")
#: A quoted name paired with a quoted value, as in the repr of a dict or a
#: ``CIMultiDict`` (``'x-api-key': 'abc'``) or of keyword arguments
#: (``api_key='abc'``); the name decides. In the value each character has one
#: way to match (a backslash only as an escape; ``\\?`` lets the value end in
#: one, as an unescaped quote after it ends it), so a value that never closes
#: costs time linear in its length, not 2 ** its backslashes.
_PAIR_HEAD = (
    r"""(?P<q>['"]?)(?P<name>[A-Za-z0-9_.-]{1,64})(?P=q)(?P<sep>\s*[:=]\s*)"""
    r"""(?P<v>['"])(?P<value>(?:\\.|(?!(?P=v))[^\\\n])*)\\?"""
)
_QUOTED_PAIR = re.compile(_PAIR_HEAD + r"(?P=v)")
_QUOTED_PAIR_CUT = re.compile(_PAIR_HEAD + r"(?:(?P=v)|\Z)")
#: ``name=value`` outside URLs (``api_key=abc`` in a message); masked when the
#: name looks like a secret header's.
_BARE_PAIR = re.compile(r"(?<![\w.?&;-])([A-Za-z][\w.-]{0,63})=([^\s&#'\",;)\]}>]+)")
#: ``Name: value`` of a secret header in free text: masked to the end of the line.
_HEADER_LINE = re.compile(
    r"(?i)(?<![\w-])("
    + "|".join(re.escape(name) for name in sorted(SECRET_HEADERS, key=len, reverse=True))
    + r")(\s*:\s*)(?!['\"])([^\r\n]+)"
)


def _pair(match: re.Match[str]) -> str:
    name = match.group("name")
    if not (is_secret_header(name) or is_secret_param(name)):
        return match.group(0)
    quote, value_quote = match.group("q"), match.group("v")
    return f"{quote}{name}{quote}{match.group('sep')}{value_quote}{MASK}{value_quote}"


def _bare(match: re.Match[str]) -> str:
    if not is_secret_header(match.group(1)):
        return match.group(0)
    return f"{match.group(1)}={MASK}"


def _query(match: re.Match[str]) -> str:
    if not is_secret_param(match.group(2)):
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}={MASK}"


def redact_text(text: str) -> str:
    """Mask secrets in free text: bearer, basic and token credentials, API keys,
    secret query values, URL credentials, and secret headers written as ``Name: value`` or as they
    appear in the repr of a header mapping (aiohttp's ``RequestInfo`` holds the
    request headers, so ``repr(ClientResponseError)`` shows them)."""
    if not text:
        return text
    return _redact(text, _WHOLE)


#: How far past what it shows ``redact_head`` reads (characters).
HEAD_MARGIN = 256


def redact_head(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text`` redacted, in time bounded by ``limit``.

    ``redact_text(text)[:limit]``, except that only ``limit + HEAD_MARGIN``
    characters are read: a 20 MB exception message costs what a short one
    does. A secret running past that cut (an open quoted value, credentials
    before their ``@``, a key cut below its minimum length) is masked to the
    cut, never half shown.
    """
    if len(text) <= limit + HEAD_MARGIN:
        return redact_text(text)[:limit]
    return _redact(text[: limit + HEAD_MARGIN], _CUT)[:limit]


_Patterns = tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str], re.Pattern[str]]
#: The patterns whose value must end somewhere: for a whole text, and for a text cut short.
_WHOLE: _Patterns = (_QUOTED_PAIR, _TOKEN, _KEYS, _USERINFO)
_CUT: _Patterns = (_QUOTED_PAIR_CUT, _TOKEN_CUT, _KEYS_CUT, _USERINFO_CUT)


def _redact(text: str, patterns: _Patterns) -> str:
    pairs, token, keys, userinfo = patterns
    text = pairs.sub(_pair, text)
    text = _HEADER_LINE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = token.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = keys.sub(MASK, text)
    text = _QUERY.sub(_query, text)
    text = _BARE_PAIR.sub(_bare, text)
    return userinfo.sub(lambda m: m.group(1) + MASK + "@", text)


@functools.lru_cache(maxsize=4096)
def redact_key(key: str) -> str:
    """A key as seawall keeps and shows it: ``key`` itself unless it holds a secret or a
    character that does not print.

    Keys are shown in ``health()``, metric labels, logs and events, and a user
    may key calls by a URL with credentials or an API key in its query, or by
    text a request brought (``key=f"tenant:{name}"``): a newline there forged a
    log line, an escape sequence drove the terminal of whoever read the log, a
    bidi control showed another key. Such characters are escaped as ``repr``
    writes them (``\\n``, ``\\x1b``, ``\\u202e``), not refused: the call goes on
    (a key is the caller's name for an upstream, not input to check). Cached:
    ``sw.call`` asks once per call, and keys repeat.
    """
    text = redact_text(key)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def exception_str(exc: BaseException) -> str:
    """``str(exc)``; never raises.

    When ``exc``'s ``__str__`` raises (or returns something that is not a
    string), a stand-in that names its type and says so.
    """
    try:
        return str(exc)
    except Exception as err:  # not BaseException: an interrupt stays one
        return _unreadable(exc, "__str__", err)


def exception_repr(exc: BaseException, cut: int | None = None) -> str:
    """``repr(exc)``; never raises (a stand-in as ``exception_str``'s).

    ``cut``: for a caller that wants only the head of it, text and bytes
    arguments are first cut to that many characters, when ``exc`` has the
    built-in ``repr`` (a 20 MB message is then neither copied nor escaped).
    """
    try:
        args = exc.args
        if (
            cut is not None
            and type(exc).__repr__ is BaseException.__repr__
            and any(isinstance(arg, str | bytes) and len(arg) > cut for arg in args)
        ):
            args = tuple(arg[:cut] if isinstance(arg, str | bytes) else arg for arg in args)
            shown = repr(args[0]) if len(args) == 1 else repr(args)[1:-1]  # as BaseException's
            return f"{type(exc).__name__}({shown})"
        return repr(exc)
    except Exception as err:
        return _unreadable(exc, "__repr__", err)


def describe_exception(exc: BaseException, limit: int) -> str:
    """``exc``'s repr redacted, at most ``limit`` characters; never raises.

    Cut before it is redacted (``redact_head``), so a huge message costs what
    a short one does.
    """
    return redact_head(exception_repr(exc, limit + HEAD_MARGIN), limit)


def _unreadable(exc: BaseException, method: str, err: Exception) -> str:
    return f"<{type(exc).__name__}: its {method} raised {type(err).__name__}>"
