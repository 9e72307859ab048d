"""Keeping secrets inside the process: redacted URLs, headers and text.

Every event, incident, log line and error message seawall builds goes
through these functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from yarl import URL

__all__ = [
    "MASK",
    "SECRET_HEADERS",
    "SECRET_PARAMS",
    "is_secret_header",
    "is_secret_param",
    "redact_headers",
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
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "code",
    }
)

_SECRETISH = re.compile(r"(key|token|secret|passw|signature|credential|auth)", re.IGNORECASE)


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


# Things that look like keys wherever they appear in free text.
_TEXT_PATTERNS = (
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_-]{8,}"),
    re.compile(r"\bsk-ant-[A-Za-z0-9_-]{8,}"),
    re.compile(
        r"(?i)([?&](?:key|api_key|apikey|token|access_token|sig|signature|secret|password)=)[^&#\s'\"]+"
    ),
    re.compile(r"(?i)(//)[^/@\s:]+:[^/@\s]+@"),
)


def redact_text(text: str) -> str:
    """Mask bearer tokens, API keys, secret query values and URL credentials in text."""
    if not text:
        return text
    text = _TEXT_PATTERNS[0].sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _TEXT_PATTERNS[1].sub(MASK, text)
    text = _TEXT_PATTERNS[2].sub(MASK, text)
    text = _TEXT_PATTERNS[3].sub(lambda m: m.group(1) + MASK, text)
    return _TEXT_PATTERNS[4].sub(lambda m: m.group(1) + MASK + "@", text)
