"""RFC 9457 problem details and small JSON responses, sent over raw ASGI.

Used by ``seawall.asgi``; no web framework needed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

__all__ = [
    "PROBLEM_TYPE_BASE",
    "RETRY_AFTER_MAX",
    "retry_after_header",
    "send_json",
    "send_problem",
]

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: Problem ``type`` URIs are this prefix plus a slug (RFC 9457 section 3.1.1).
PROBLEM_TYPE_BASE = "urn:seawall:problem:"


#: The most seconds a ``Retry-After`` we send says: a 32-bit signed integer (68 years), which
#: every client's parser holds. A breaker's recovery timeout may be any finite number; a
#: 301-digit header from ``recovery_timeout=1e300`` overflows clients that parse it.
RETRY_AFTER_MAX = 2**31 - 1


def retry_after_header(seconds: float) -> bytes:
    """``Retry-After`` in whole seconds, rounded up, at least 1, at most ``RETRY_AFTER_MAX``."""
    if not seconds < RETRY_AFTER_MAX:  # (infinity too)
        return str(RETRY_AFTER_MAX).encode()
    if not seconds > 1:  # (NaN too: no wait known)
        return b"1"
    return str(math.ceil(seconds)).encode()


async def send_json(
    send: Send,
    status: int,
    body: Mapping[str, Any],
    *,
    content_type: bytes = b"application/json",
    headers: tuple[tuple[bytes, bytes], ...] = (),
    head: bool = False,
) -> None:
    """Send a whole JSON response, never cached; for ``head`` the headers only."""
    data = json.dumps(body, default=str, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(data)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else data})


async def send_problem(
    send: Send,
    status: int,
    slug: str,
    title: str,
    detail: str,
    retry_after: float | None,
    **extensions: Any,
) -> None:
    """Send an RFC 9457 problem; ``retry_after`` seconds also become a ``Retry-After`` header.

    ``extensions`` are extra members (``upstream``, ``attempts``); every value
    must already be safe to show the client.
    """
    problem: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        **extensions,
    }
    headers: tuple[tuple[bytes, bytes], ...] = ()
    if retry_after is not None:
        header = retry_after_header(retry_after)
        problem["retry_after"] = int(header)
        headers = ((b"retry-after", header),)
    await send_json(
        send, status, problem, content_type=b"application/problem+json", headers=headers
    )
