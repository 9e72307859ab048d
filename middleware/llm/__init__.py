"""What seawall knows about LLM provider APIs, shared by the plugin, cooldown and middleware.

- which routes are LLM routes (``Policy.llm`` or a well-known provider host);
- the providers' rate-limit headers: OpenAI's ``x-ratelimit-*`` (durations
  such as ``"6m0s"``, ``"1s"``, ``"20ms"``) and Anthropic's
  ``anthropic-ratelimit-*`` (RFC 3339 timestamps);
- the ``model`` of a JSON request body, for ``Policy(key="model")``.

A malformed header value is treated as absent, like ``Retry-After``.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from datetime import datetime

import attrs

from seawall.policy import Policy

__all__ = [
    "LLM_HOSTS",
    "MODEL_BODY_LIMIT",
    "RateInfo",
    "is_llm_route",
    "model_from_json",
    "parse_duration",
    "parse_timestamp",
    "rate_info",
    "reset_wait",
]

#: Hosts treated as LLM routes even when their policy does not say ``llm=True``.
LLM_HOSTS = frozenset({"api.openai.com", "api.anthropic.com"})

#: Largest request body searched for ``model`` (bigger bodies keep the plain key).
MODEL_BODY_LIMIT = 1024 * 1024

#: Longest model name used in a key.
_MODEL_MAX = 100

_MAX_LEN = 64
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)(ms|h|m|s))")
_DURATION_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|h|m|s))+$")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_MODEL_OK = re.compile(r"^[A-Za-z0-9._:/@+-]+$")


def is_llm_route(policy: Policy, host: str | None) -> bool:
    """True for a route marked ``llm=True`` or a request to a well-known provider host."""
    return policy.llm or (host is not None and host.lower() in LLM_HOSTS)


def parse_duration(value: str | None) -> float | None:
    """Seconds from OpenAI's duration format (``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``).

    A plain number is read as seconds. ``None`` when absent or malformed.
    """
    if value is None:
        return None
    text = value.strip().lower()
    if not text or len(text) > _MAX_LEN:
        return None
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return number if math.isfinite(number) and number >= 0 else None
    if not _DURATION_WHOLE.match(text):
        return None
    return sum(float(amount) * _UNIT[unit] for amount, unit in _DURATION.findall(text))


def parse_timestamp(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from now until an RFC 3339 timestamp (Anthropic's ``*-reset``); 0 if past."""
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > _MAX_LEN:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # RFC 3339 always carries an offset; without one it is ambiguous
    current = time.time() if now is None else now
    return max(0.0, moment.timestamp() - current)


def _count(value: str | None) -> int | None:
    if value is None or len(value) > _MAX_LEN:
        return None
    text = value.strip()
    return int(text) if text.isascii() and text.isdigit() else None


@attrs.frozen
class RateInfo:
    """A provider's request limit as its headers state it.

    :param limit: requests allowed in the provider's window.
    :param remaining: requests left now.
    :param reset: seconds until ``remaining`` is back at ``limit``, or ``None``.
    """

    limit: int
    remaining: int
    reset: float | None

    @property
    def rate(self) -> float | None:
        """Requests per second the provider refills, or ``None`` when unknown.

        Providers refill continuously: ``limit - remaining`` requests come back
        in ``reset`` seconds.
        """
        used = self.limit - self.remaining
        if self.reset is None or self.reset <= 0 or used <= 0:
            return None
        return used / self.reset


def rate_info(headers: Mapping[str, str], *, now: float | None = None) -> RateInfo | None:
    """The request limit from OpenAI or Anthropic headers, or ``None`` when absent."""
    limit = _count(headers.get("x-ratelimit-limit-requests"))
    if limit is not None:
        remaining = _count(headers.get("x-ratelimit-remaining-requests"))
        reset = parse_duration(headers.get("x-ratelimit-reset-requests"))
    else:
        limit = _count(headers.get("anthropic-ratelimit-requests-limit"))
        if limit is None:
            return None
        remaining = _count(headers.get("anthropic-ratelimit-requests-remaining"))
        reset = parse_timestamp(headers.get("anthropic-ratelimit-requests-reset"), now=now)
    if remaining is None or limit <= 0 or remaining > limit:
        return None
    return RateInfo(limit, remaining, reset)


_RESETS = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests", parse_duration),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens", parse_duration),
    (
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-reset",
        parse_timestamp,
    ),
    ("anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset", parse_timestamp),
    (
        "anthropic-ratelimit-input-tokens-remaining",
        "anthropic-ratelimit-input-tokens-reset",
        parse_timestamp,
    ),
    (
        "anthropic-ratelimit-output-tokens-remaining",
        "anthropic-ratelimit-output-tokens-reset",
        parse_timestamp,
    ),
)


def reset_wait(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds until the exhausted limit resets, from the providers' ``*-reset`` headers.

    Only limits whose ``remaining`` is 0 (or not given) count; the longest of
    them wins, since every exhausted limit must recover before a retry works.
    """
    waits = []
    for remaining_name, reset_name, parse in _RESETS:
        raw = headers.get(reset_name)
        if raw is None:
            continue
        remaining = _count(headers.get(remaining_name))
        if remaining:  # not exhausted: this limit is not what refused us
            continue
        wait = parse(raw) if parse is parse_duration else parse_timestamp(raw, now=now)
        if wait is not None:
            waits.append(wait)
    return max(waits) if waits else None


def model_from_json(body: bytes) -> str | None:
    """The top-level ``model`` of a JSON object body, when it is a sane name."""
    if not body or len(body) > MODEL_BODY_LIMIT or body.lstrip()[:1] != b"{":
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, str) or not model or len(model) > _MODEL_MAX:
        return None
    return model if _MODEL_OK.match(model) else None
