"""A stream's deltas are not decoded once the model is known, and nothing read changes.

``StreamUsage`` decoded every ``data:`` line (~5 µs each: 2.2 ms of the event
loop for a 400-chunk answer) though it reads only the model and the usage
object. It now decodes lines until one names the model, then only those whose
bytes hold a ``"usage"`` key with an object value: in JSON text a string's
content cannot hold those bytes (its quotes are escaped), so whatever the
model writes, the same events are read.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seawall.llm import stream as usage_module
from seawall.llm.stream import StreamUsage
from seawall.llm.usage import Usage

#: Text a model (or an attacker steering it) could write: JSON's own syntax included.
TEXT = st.lists(
    st.sampled_from([*'ab "{}:,\\\n\tusage\u2028', '"usage": {', '"usage":{"x":1}', "\\u0022"]),
    max_size=20,
).map("".join)


def _read(lines: list[bytes], cuts: list[int], *, skim: bool) -> list[Usage]:
    """What a reader hands over for ``lines`` sent as one byte string cut at ``cuts``."""
    done: list[Usage] = []
    reader = StreamUsage(done.append)
    data = b"".join(lines)
    points = sorted({min(max(cut, 0), len(data)) for cut in cuts} | {0, len(data)})
    saved = usage_module._has_usage
    if not skim:  # the reader as it was: every line decoded
        usage_module._has_usage = lambda _line: True  # type: ignore[assignment]
    try:
        for start, end in itertools.pairwise(points):
            reader(data[start:end])
        reader(b"")
    finally:
        usage_module._has_usage = saved
    return done


def _event(data: dict[str, Any], compact: bool) -> bytes:
    separators = (",", ":") if compact else (", ", ": ")
    return b"data: " + json.dumps(data, separators=separators).encode() + b"\n\n"


def openai_chat(texts: list[str], with_nulls: bool, compact: bool) -> list[bytes]:
    base = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini"}
    lines = []
    for text in texts:
        chunk: dict[str, Any] = base | {"choices": [{"index": 0, "delta": {"content": text}}]}
        if with_nulls:
            chunk["usage"] = None  # stream_options={"include_usage": True} sends it on each
        lines.append(_event(chunk, compact))
    counts = {"prompt_tokens": 900, "completion_tokens": len(texts) + 1}
    lines.append(_event(base | {"choices": [], "usage": counts}, compact))
    return [*lines, b"data: [DONE]\n\n"]


def anthropic(texts: list[str], compact: bool) -> list[bytes]:
    start = {
        "type": "message_start",
        "message": {
            "id": "m1",
            "type": "message",
            "model": "claude-3-5-haiku-latest",
            "usage": {"input_tokens": 700, "output_tokens": 1, "cache_read_input_tokens": 100},
        },
    }
    lines = [_event(start, compact)]
    for text in texts:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"text": text}}
        lines.append(_event(delta, compact))
    end = {"type": "message_delta", "delta": {}, "usage": {"output_tokens": len(texts) + 2}}
    return [*lines, _event(end, compact), _event({"type": "message_stop"}, compact)]


def responses(texts: list[str], compact: bool) -> list[bytes]:
    shell = {"id": "r1", "object": "response", "model": "gpt-4o", "usage": None}
    lines = [_event({"type": "response.created", "response": shell}, compact)]
    for text in texts:
        lines.append(_event({"type": "response.output_text.delta", "delta": text}, compact))
    done = shell | {"usage": {"input_tokens": 50, "output_tokens": len(texts) + 3}}
    return [*lines, _event({"type": "response.completed", "response": done}, compact)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(TEXT, max_size=12),
    kind=st.sampled_from(["chat", "chat-nulls", "anthropic", "responses"]),
    compact=st.booleans(),
    cuts=st.lists(st.integers(0, 4000), max_size=8),
)
def test_skimming_reads_what_decoding_every_line_read(
    texts: list[str], kind: str, compact: bool, cuts: list[int]
) -> None:
    if kind.startswith("chat"):
        lines = openai_chat(texts, kind == "chat-nulls", compact)
    elif kind == "anthropic":
        lines = anthropic(texts, compact)
    else:
        lines = responses(texts, compact)
    skimmed = _read(lines, cuts, skim=True)
    assert skimmed == _read(lines, cuts, skim=False)
    assert len(skimmed) == 1
    assert skimmed[0].output_tokens == len(texts) + {"chat": 1, "chat-nulls": 1}.get(
        kind, 2 if kind == "anthropic" else 3
    )


def test_a_delta_naming_usage_in_its_text_is_not_taken_for_usage() -> None:
    """The text a model writes is escaped in the line: it never reads as a usage object."""
    trap = '", "usage": {"prompt_tokens": 999999, "completion_tokens": 999999}, "x": "'
    (found,) = _read(openai_chat([trap, "ok"], False, False), [], skim=True)
    assert (found.input_tokens, found.output_tokens) == (900, 3)


def test_the_model_priced_is_the_one_the_usage_event_names() -> None:
    """A stream that changes its model midway (hostile or a proxy's) is priced as the
    event carrying the counts names it; before, the last event decoded named it."""
    lines = openai_chat(["a"], False, True)
    lines.insert(1, lines[0].replace(b"gpt-4o-mini", b"gpt-4o"))
    (found,) = _read(lines, [], skim=True)
    assert found.model == "gpt-4o-mini"


@pytest.mark.parametrize("spaces", ["", " ", "   ", "\t", " \t "])
def test_any_json_whitespace_around_the_colon_is_read(spaces: str) -> None:
    """JSON allows whitespace between a key, its colon and its value."""
    usage = f'"usage"{spaces}:{spaces}{{"prompt_tokens": 5, "completion_tokens": 6}}'
    first = b'data: {"model": "gpt-4o-mini", "choices": []}\n\n'
    last = f'data: {{"model": "gpt-4o-mini", {usage}}}\n\n'.encode()
    found = _read([first, last], [], skim=True)
    assert found == _read([first, last], [], skim=False)
    assert [(u.input_tokens, u.output_tokens) for u in found] == [(5, 6)]


def test_a_usage_event_without_a_model_is_priced_as_the_first_event_names_it() -> None:
    """Some OpenAI-compatible servers leave the model out of the last chunk: the events
    before the model is known are decoded, so it is still found."""
    first = b'data: {"object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": []}\n\n'
    delta = b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n'
    last = b'data: {"usage": {"prompt_tokens": 5, "completion_tokens": 6}}\n\n'
    (found,) = _read([first, delta, last, b"data: [DONE]\n\n"], [], skim=True)
    assert (found.model, found.input_tokens, found.output_tokens) == ("gpt-4o-mini", 5, 6)
