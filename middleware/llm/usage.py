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
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from seawall.llm.extract import read_usage

__all__ = [
    "LONG_MODEL",
    "MAX_TOKENS",
    "MODEL_NAME_MAX",
    "SUCCESS_BODY_LIMIT",
    "StreamUsage",
    "Usage",
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
#: zero-width and bidi marks (a name that reads as another one).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")

#: Most distinct usage fields gathered from one stream's events.
_USAGE_FIELDS_MAX = 64

#: Longest SSE line kept while looking for usage; a longer one stops the scan.
_LINE_LIMIT = 1024 * 1024

#: The output counts of the answers that can be priced (as UTF-8 JSON keys): an
#: answer naming neither is not decoded.
_OUTPUT_COUNTS = (b'"completion_tokens"', b'"output_tokens"')

#: Most entries of one object-valued usage field kept from a stream (``*_details``).
_USAGE_DETAILS_MAX = 16

#: Longest string-valued usage field kept from a stream.
_USAGE_TEXT_MAX = 64

#: An event that may carry counts: a ``"usage"`` key whose value is an object. In a
#: JSON text these bytes are a key or a string value, never part of a string's
#: content (its quotes would be escaped): a content delta never matches.
_has_usage = re.compile(rb'"usage"\s*:\s*\{').search


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
    if len(model) > MODEL_NAME_MAX or _UNPRINTABLE.search(model):
        model = LONG_MODEL
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


def _scalar(value: Any) -> bool:
    """A number, or a short string (Anthropic's ``service_tier``)."""
    if isinstance(value, str):
        return len(value) <= _USAGE_TEXT_MAX
    return isinstance(value, int | float)


def _small(value: Any) -> bool:
    """Whether a usage field of a stream's event is kept until the stream ends.

    Providers send counts, short strings and flat objects of counts
    (``prompt_tokens_details``, ``cache_creation``). Anything else (a list,
    a nested or long object, a long string) is dropped as it comes: a
    hostile stream's 64 fields of a megabyte each held ~200 MB per stream.
    """
    if isinstance(value, dict):
        return len(value) <= _USAGE_DETAILS_MAX and all(_scalar(v) for v in value.values())
    return _scalar(value)


class StreamUsage:
    """Reads the usage out of an SSE stream, chunk by chunk, without holding the stream.

    Only the current line is kept. OpenAI chat sends usage in a last chunk
    (with ``stream_options={"include_usage": True}``); the responses API in
    ``response.completed``; Anthropic in ``message_start`` (input) and
    ``message_delta`` (output, cumulative). Events are decoded until one names
    the model, and after that only those with a usage object: the model priced
    is the last one those name.
    """

    def __init__(self, on_done: Callable[[Usage], None]) -> None:
        self._on_done = on_done
        self._parts: list[bytes] = []  # the current line so far, as it came
        self._size = 0  # its length
        self._model: str | None = None
        self._usage: dict[str, Any] = {}
        self._object: str | None = None
        self._type: str | None = None
        self._broken = False

    def __call__(self, chunk: bytes) -> None:
        if self._broken:
            return
        try:
            if not chunk:
                self._finish()
                return
            self._scan(chunk)
        except Exception as exc:  # never let a surprise reach the caller's stream
            self._broken = True
            log.debug("seawall: stopped reading usage from a stream: %r", exc)

    def _scan(self, chunk: bytes) -> None:
        """Read the lines ``chunk`` completes; keep the last one's start.

        Each byte is copied once, when its line is complete: joining the
        pending part to every chunk instead made a long line cost its length
        squared (a 1 MiB line in 64-byte reads took seconds of the event loop).
        """
        end = chunk.rfind(b"\n")
        if end < 0:
            self._parts.append(chunk)
            self._size += len(chunk)
            if self._size > _LINE_LIMIT:
                self._stop()
            return
        head = b"".join([*self._parts, chunk[: end + 1]]) if self._parts else chunk[: end + 1]
        rest = chunk[end + 1 :]
        self._parts = [rest] if rest else []
        self._size = len(rest)
        for line in head.split(b"\n"):
            # Once the model is known, a delta or "usage": null is not decoded (each
            # cost ~5 µs of the loop: a 400-chunk stream 2.2 ms).
            if line.startswith(b"data:") and (self._model is None or _has_usage(line)):
                self._event(line[5:].strip())
        if self._size > _LINE_LIMIT:
            self._stop()

    def _stop(self) -> None:
        self._broken = True
        self._parts = []
        self._usage = {}

    def _event(self, payload: bytes) -> None:
        if not payload.startswith(b"{"):
            return  # "[DONE]" and keep-alives
        try:
            data = json.loads(payload)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        kind = data.get("type")
        if kind == "message_start" and isinstance(data.get("message"), dict):
            data = data["message"]
            self._type = "message"
        elif kind == "response.completed" and isinstance(data.get("response"), dict):
            data = data["response"]
        model = data.get("model")
        if isinstance(model, str) and model:
            self._model = model
        if isinstance(data.get("object"), str):
            self._object = data["object"]
        usage = data.get("usage")
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if _small(v)})
            if len(self._usage) > _USAGE_FIELDS_MAX:  # no provider sends that many
                self._stop()

    def _finish(self) -> None:
        if self._model is None or not self._usage:
            return
        answer: dict[str, Any] = {"model": self._model, "usage": self._usage}
        if self._object == "response":
            answer["object"] = "response"
        usage = parse_usage(answer)
        if usage is not None:
            self._on_done(usage)
