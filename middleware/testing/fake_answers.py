"""The fake provider's scripted answers (``openai_error``, ``status``...) and option checks.

Part of ``seawall.testing.fake_llm``, which re-exports the public names.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

__all__ = ["FLAVORS", "Handler", "anthropic_error", "check_options", "openai_error", "status"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def openai_error(
    code: int, kind: str, *, message: str = "", headers: dict[str, str] | None = None
) -> Handler:
    """An OpenAI error answer: ``{"error": {"type", "code", "message"}}`` with status ``code``.

    ``kind`` is the error code (``insufficient_quota``, ``rate_limit_exceeded``,
    ``context_length_exceeded``, ``server_error``, ...).
    """
    types = {"rate_limit_exceeded": "requests", "context_length_exceeded": "invalid_request_error"}
    body = {
        "error": {
            "message": message or f"fake {kind}",
            "type": types.get(kind, kind),
            "param": None,
            "code": kind,
        }
    }
    return _json_answer(code, body, headers)


def anthropic_error(
    code: int, kind: str, *, message: str = "", headers: dict[str, str] | None = None
) -> Handler:
    """An Anthropic error answer: ``{"type": "error", "error": {"type", "message"}}``."""
    body = {"type": "error", "error": {"type": kind, "message": message or f"fake {kind}"}}
    return _json_answer(code, body, headers)


def status(code: int, text: str = "", headers: dict[str, str] | None = None) -> Handler:
    """A plain answer with status ``code``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(status=code, text=text or f"status {code}", headers=headers)

    return handler


def _json_answer(code: int, body: Any, headers: dict[str, str] | None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.json_response(body, status=code, headers=headers)

    return handler


#: The ``flavor`` values: which rate-limit headers the fake sends.
FLAVORS = ("openai", "anthropic", "none")


def check_options(
    rate: float | None,
    burst: float | None,
    flavor: str,
    chunks: int,
    chunk_delay: float,
    latency: float,
) -> None:
    """Refuse what would make every request a bare 500 (``rate=0``) or not do as asked."""
    problems = []
    for name, value, low in (("rate", rate, 0.0), ("burst", burst, 1.0)):
        if value is not None and not (_real(value) and math.isfinite(value) and value >= low):
            problems.append(f"{name}={value!r} (give a finite number >= {low:g}, or None)")
    if rate is not None and rate == 0:
        problems.append("rate=0 (no request could ever pass; give a rate above 0, or None)")
    for name, value in (("chunk_delay", chunk_delay), ("latency", latency)):
        if not (_real(value) and math.isfinite(value) and value >= 0):
            problems.append(f"{name}={value!r} (give seconds >= 0)")
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 0:
        problems.append(f"chunks={chunks!r} (give a whole number >= 0)")
    if flavor not in FLAVORS:
        problems.append(f"flavor={flavor!r} (give one of {', '.join(map(repr, FLAVORS))})")
    if problems:
        raise ValueError("FakeProvider(" + "; ".join(problems) + ")")


def _real(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)
