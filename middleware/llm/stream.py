"""The usage of a streamed (SSE) LLM answer, read as the caller reads the stream.

OpenAI chat sends usage in a last chunk (with ``stream_options={"include_usage":
True}``); the responses API in ``response.completed``; Anthropic in
``message_start`` (input) and ``message_delta`` (output, cumulative). The
adapters show ``StreamUsage`` each chunk as it passes and ``b""`` once when the
stream ends, *however* it ends: read whole, closed or released by the caller
before its end, broken by the upstream, or dropped unread. A stream left before
its usage came is still a call: of the model seen so far, with the counts seen
so far (Anthropic's ``message_start`` gives the input: priced, a lower bound),
else an unpriced call (``on_unpriced``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from seawall.llm.usage import Usage, model_name, parse_usage

__all__ = ["UNKNOWN_MODEL", "StreamUsage"]

log = logging.getLogger("seawall.costs")

#: The model a stream is counted under when it ended before any event named one and its
#: request's model is not known (only ``Policy(key="model")`` routes read it).
UNKNOWN_MODEL = "(unknown)"

#: Most distinct usage fields gathered from one stream's events.
_USAGE_FIELDS_MAX = 64

#: Longest SSE line kept while looking for usage; a longer one stops the scan.
_LINE_LIMIT = 1024 * 1024

#: Most entries of one object-valued usage field kept from a stream (``*_details``).
_USAGE_DETAILS_MAX = 16

#: Longest string-valued usage field kept from a stream.
_USAGE_TEXT_MAX = 64

#: An event that may carry counts: a ``"usage"`` key whose value is an object. In a
#: JSON text these bytes are a key or a string value, never part of a string's
#: content (its quotes would be escaped): a content delta never matches.
_has_usage = re.compile(rb'"usage"\s*:\s*\{').search

#: The events whose ``message``/``response`` object names the model and holds the usage.
_WRAPPED = {"message_start": "message", "response.completed": "response"}


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

    Only the current line is kept. Events are decoded until one names the
    model, and after that only those with a usage object: the model priced is
    the last one those name. ``b""`` ends the stream (read whole or not); the
    first ``b""`` counts it, once: ``on_done`` with the usage read, or, when
    none can be priced (the stream was left before its usage came, never
    had one, or was too odd to read), ``on_unpriced`` with a usage of no
    tokens under the model seen, else ``requested``, else ``UNKNOWN_MODEL``.
    Without ``on_unpriced`` such a stream is not counted (as before).
    """

    def __init__(
        self,
        on_done: Callable[[Usage], None],
        on_unpriced: Callable[[Usage], None] | None = None,
        requested: str | None = None,
    ) -> None:
        self._on_done = on_done
        self._on_unpriced = on_unpriced
        self._requested = requested
        self._parts: list[bytes] = []  # the current line so far, as it came
        self._size = 0  # its length
        self._model: str | None = None
        self._usage: dict[str, Any] = {}
        self._object: str | None = None
        self._broken = False
        self._ended = False

    def __call__(self, chunk: bytes) -> None:
        if self._ended:
            return  # counted already: a stream read whole and then closed is one call
        try:
            if not chunk:
                self._ended = True
                self._parts = []  # a line cut in its middle is not read
                self._finish()
            elif not self._broken:
                self._scan(chunk)
        except Exception as exc:  # never let a surprise reach the caller's stream
            self._stop()
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
        """Read no more (the model seen so far is kept: the stream is still a call)."""
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
        wrapped = _WRAPPED.get(kind) if isinstance(kind, str) else None
        if wrapped is None and isinstance(kind, str) and kind.startswith("response."):
            wrapped = "response"  # response.created names the model before any text
        if wrapped is not None and isinstance(data.get(wrapped), dict):
            data = data[wrapped]
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
        usage = None
        if self._model is not None and self._usage:
            answer: dict[str, Any] = {"model": self._model, "usage": self._usage}
            if self._object == "response":
                answer["object"] = "response"
            usage = parse_usage(answer)
        self._usage = {}
        if usage is not None:
            self._on_done(usage)
        elif self._on_unpriced is not None:
            model = model_name(self._model or self._requested or UNKNOWN_MODEL)
            self._on_unpriced(Usage(model, "", "", 0, 0))
