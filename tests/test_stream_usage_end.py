"""``StreamUsage`` counts a stream once when it ends, whole or not, and its finalizer
path is safe at interpreter exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from seawall.llm.stream import UNKNOWN_MODEL, StreamUsage
from seawall.llm.usage import Usage

from ._streams import CHAT_USAGE, MESSAGE_START, chat_chunk, sse


def _reader(requested: str | None = None) -> tuple[StreamUsage, list[Usage], list[Usage]]:
    priced: list[Usage] = []
    unpriced: list[Usage] = []
    return StreamUsage(priced.append, unpriced.append, requested), priced, unpriced


def test_an_end_counts_once() -> None:
    """Read whole then ended again (a close after the end): one priced call."""
    reader, priced, unpriced = _reader()
    reader(chat_chunk("hi") + CHAT_USAGE)
    reader(b"")
    reader(b"")
    reader(chat_chunk("more"))
    reader(b"")
    assert [u.output_tokens for u in priced] == [7]
    assert unpriced == []


def test_a_stream_left_before_its_usage_is_an_unpriced_call_of_its_model() -> None:
    reader, priced, unpriced = _reader("gpt-4.1")
    reader(chat_chunk("hi"))
    reader(b"")
    assert priced == []
    assert [(u.model, u.input_tokens, u.output_tokens) for u in unpriced] == [("gpt-4o", 0, 0)]


def test_a_stream_without_a_model_counts_the_requested_one_else_unknown() -> None:
    for requested, expected in (("gpt-4.1", "gpt-4.1"), (None, UNKNOWN_MODEL)):
        reader, _, unpriced = _reader(requested)
        reader(chat_chunk("hi", model=None))
        reader(b"")
        assert [u.model for u in unpriced] == [expected]


def test_anthropic_left_after_message_start_is_priced_from_its_input() -> None:
    reader, priced, unpriced = _reader()
    reader(MESSAGE_START)
    reader(b"")
    assert [(u.input_tokens, u.output_tokens) for u in priced] == [(1000, 1)]
    assert unpriced == []


def test_a_responses_stream_left_early_names_its_model_from_response_created() -> None:
    reader, _, unpriced = _reader()
    created = {"type": "response.created", "response": {"model": "gpt-4.1", "usage": None}}
    reader(sse(created))
    reader(b"")
    assert [u.model for u in unpriced] == ["gpt-4.1"]


def test_a_huge_event_and_a_cut_line_are_one_call_holding_nothing() -> None:
    """A 2 MiB line stops the scan (its parts dropped); the end is one unpriced call."""
    reader, _, unpriced = _reader()
    for _ in range(32):
        reader(b'data: {"x": "' + b"y" * 65536)
    assert reader._parts == []
    reader(b"")
    assert [u.model for u in unpriced] == [UNKNOWN_MODEL]
    cut, _, cut_unpriced = _reader()
    cut(chat_chunk("hi") + chat_chunk("second")[:20])
    cut(b"")
    assert [u.model for u in cut_unpriced] == ["gpt-4o"]


def test_the_end_finalizers_are_safe_at_interpreter_exit() -> None:
    """Streams still alive when the interpreter exits are not counted then, and nothing
    is printed (the finalizers are not run at exit)."""
    program = textwrap.dedent(
        """
        import asyncio
        from seawall import _body
        from seawall.httpx_replay import SyncReplay

        def tap(chunk):
            print("counted at exit", chunk)

        kept = [SyncReplay([], None, iter([b"x"]), tap)]

        async def main():
            kept.append(_body._ReplayReader(_body._Gate(), tap))

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == ""
