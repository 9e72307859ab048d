"""What an LLM answer used: tokens, read from JSON answers and from SSE streams.

OpenAI chat completions and responses, Anthropic messages; cache tokens
included. Input tokens are all prompt tokens, cached ones included (for
Anthropic: ``input_tokens`` plus the cache reads and writes, as genai-prices
counts them); ``cache_read_tokens``/``cache_write_tokens`` say how many of
them were cached.
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from collections.abc import Mapping
from typing import Any

import attrs

from seawall.llm.extract import read_usage

__all__ = [
    "LONG_MODEL",
    "MAX_TOKENS",
    "MODEL_NAME_MAX",
    "SUCCESS_BODY_LIMIT",
    "Usage",
    "model_name",
    "parse_usage",
    "usage_from_json",
]

log = logging.getLogger("seawall.costs")

#: Largest successful JSON answer read for its usage; larger ones are not priced.
SUCCESS_BODY_LIMIT = 4 * 1024 * 1024

#: Most tokens one call may report in each count (input, output, cache reads,
#: cache writes): far above any real context window. An answer reporting more,
#: or a negative, fractional or non-numeric count, is not priced.
MAX_TOKENS = 100_000_000


#: Longest model name kept (names come from upstream answers): a longer one is
#: read as ``LONG_MODEL``. Price lookups take time in proportion to the name
#: (genai-prices matches it against every model's patterns: ~0.15 s of the event
#: loop for a 1 MB name), and events and metrics carry it.
MODEL_NAME_MAX = 200

#: What a model name longer than ``MODEL_NAME_MAX``, or with control or bidi characters,
#: is read as (never priced).
LONG_MODEL = "(other)"

#: Characters no model is named with: C0/C1 controls (a newline forges log lines, an
#: escape sequence rewrites the terminal of whoever reads ``/metrics`` or the log),
#: zero-width and bidi marks (a name that reads as another one, U+061C the Arabic one),
#: and the no-break space (a name that reads as the one with a space, counted apart).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\xa0\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")

#: The output counts of the answers that can be priced (as UTF-8 JSON keys): an
#: answer naming neither is not decoded.
_OUTPUT_COUNTS = (b'"completion_tokens"', b'"output_tokens"')


def model_name(model: str) -> str:
    """``model`` as it is counted: ``LONG_MODEL`` when too long or unprintable."""
    if len(model) > MODEL_NAME_MAX or _UNPRINTABLE.search(model):
        return LONG_MODEL
    return model


@attrs.frozen
class Usage:
    """Tokens one call used, in genai-prices' terms, and the model that answered."""

    model: str
    provider: str  # "openai" or "anthropic"
    flavor: str  # "chat", "responses" or "default" (Anthropic messages)
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


def _shape(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """(provider, api flavor) from an answer's shape, or ``None`` when it has no usage."""
    usage = data.get("usage")
    if not isinstance(usage, Mapping):
        return None
    if "prompt_tokens" in usage:
        return "openai", "chat"
    if data.get("object") == "response" or "input_tokens_details" in usage:
        return "openai", "responses"
    if "input_tokens" in usage:
        return "anthropic", "default"
    return None


def parse_usage(data: Any) -> Usage | None:
    """The usage of a decoded answer (OpenAI chat/responses, Anthropic messages), or ``None``."""
    if not isinstance(data, Mapping):
        return None
    model = data.get("model")
    shape = _shape(data)
    if not isinstance(model, str) or not model or shape is None:
        return None
    provider, flavor = shape
    model = model_name(model)
    counts = _counts(data, provider, flavor)
    if counts is None:
        return None
    if None in counts:
        log.debug("seawall: not pricing a %s answer with absurd usage %r", provider, counts)
        return None
    input_tokens, output_tokens, cache_read, cache_write = (int(n or 0) for n in counts)
    if cache_read + cache_write > input_tokens:  # cached tokens are part of the input
        log.debug("seawall: not pricing a %s answer with more cached than input tokens", provider)
        return None
    return Usage(
        model=model,
        provider=provider,
        flavor=flavor,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        raw=data,
    )


def _counts(data: Mapping[str, Any], provider: str, flavor: str) -> list[int | None] | None:
    """Input, output, cache read and cache write tokens (``None`` for an absurd one), or
    ``None`` when the usage cannot be read; by genai-prices, else by ``_built_in_counts``."""
    try:
        from genai_prices.data_snapshot import get_snapshot
    except ImportError:  # the "llm" extra is missing: the three shapes, read here
        return _built_in_counts(data["usage"], provider)
    try:
        # The provider's extractor reads usage even for a model it has no price for.
        known = get_snapshot().find_provider(None, provider, None)
        values, found = read_usage(known, data, flavor)  # as known.extract_usage(...)[1]
        return [_tokens(_count(values, found, name)) for name in _COUNT_NAMES]
    except Exception as exc:  # the database could not read this shape, or these counts
        log.debug("seawall: could not read usage of a %s answer: %r", provider, exc)
        return None


#: The counts seawall keeps, as genai-prices' ``Usage`` names them.
_COUNT_NAMES = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")

#: What genai-prices makes of a count its ``Usage`` lacks, by (count, the counts above 0
#: it has): ``0``, or ``None`` when it raises (a part of the count without the count).
_MISSING: dict[tuple[str, frozenset[str]], int | None] = {}


def _count(values: dict[str, Any], found: Any, name: str) -> Any:
    """``found.<name>`` of genai-prices' ``Usage`` holding ``values`` (``found`` is built
    from them when ``None``): a count it holds is read as it is; for one it lacks, its
    answer is worked out once per set of counts it has (it took ~0.03 ms a count, each
    time); where it raises (``ValueError``), it raises again."""
    value = values.get(name)
    if value is not None:
        return value
    key = (name, frozenset(k for k, v in values.items() if v > 0))
    if found is None and _MISSING.get(key) != 0:
        from genai_prices.types import Usage

        found = Usage(**values)
    if key not in _MISSING:
        try:
            inferred = getattr(found, name)
        except ValueError:
            inferred = None
        if len(_MISSING) >= 256:  # bounded whatever the counts (a few kinds exist)
            _MISSING.clear()
        _MISSING[key] = inferred if inferred == 0 else None
    if _MISSING[key] is None:
        return getattr(found, name)  # its own answer, or its error
    return 0


def _built_in_counts(usage: Mapping[str, Any], provider: str) -> list[int | None] | None:
    """The counts as genai-prices reads them, for when it is not installed: OpenAI chat
    (``prompt_tokens``, ``completion_tokens``, ``prompt_tokens_details.cached_tokens``)
    and responses (``input_tokens``, ``output_tokens``, ``input_tokens_details``), and
    Anthropic messages, whose input adds the cache reads and writes to ``input_tokens``.
    ``None`` when the input or output count is missing."""

    def field(name: str, inner: str | None = None) -> int | None:
        value = usage.get(name)
        if inner is not None:
            value = value.get(inner) if isinstance(value, Mapping) else None
        return _tokens(value)

    if "prompt_tokens" in usage:
        names = ("prompt_tokens", "completion_tokens", "prompt_tokens_details")
    else:
        names = ("input_tokens", "output_tokens", "input_tokens_details")
    if usage.get(names[0]) is None or usage.get(names[1]) is None:
        return None
    if provider != "anthropic":
        return [field(names[0]), field(names[1]), field(names[2], "cached_tokens"), 0]
    read, write = field("cache_read_input_tokens"), field("cache_creation_input_tokens")
    uncached = field("input_tokens")
    parts = (uncached, read, write)
    total = None if None in parts else sum(n or 0 for n in parts)
    return [_tokens(total), field("output_tokens"), read, write]


def _tokens(value: Any) -> int | None:
    """A sane token count (0 when absent), or ``None`` for an absurd one."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 0 <= value <= MAX_TOKENS or value != int(value):  # NaN fails the first test
        return None
    return int(value)


def _decompress(body: bytes) -> bytes:
    """A gzip or zlib body (sessions that do not decompress), bounded; else as it is.

    The compressed and the decompressed bytes together stay within
    ``SUCCESS_BODY_LIMIT``; a body that would inflate past it gives ``b""``
    (not priced), like a plain body above the limit.
    """
    if body[:2] == b"\x1f\x8b":
        wbits = 31
    elif body[:1] == b"\x78":
        wbits = 15
    else:
        return body
    room = SUCCESS_BODY_LIMIT - len(body)
    if room <= 0:
        return b""
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, room)
    except zlib.error:
        return body
    return data if inflater.eof and not inflater.unconsumed_tail else b""


def usage_from_json(body: bytes) -> Usage | None:
    """The usage in a successful JSON answer's bytes, or ``None``.

    Only an answer that names an output count is decoded: every answer that
    can be priced does (``completion_tokens``, ``output_tokens``), and the
    others (embeddings, with ``prompt_tokens`` alone; lists of files or
    models) cost no decoding on the event loop (~75 ms for 3 MiB of
    embeddings), since they could not be priced anyway.
    """
    body = _decompress(body)
    if not body or body.lstrip()[:1] != b"{":
        return None
    if not any(name in body for name in _OUTPUT_COUNTS):
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return parse_usage(data)
