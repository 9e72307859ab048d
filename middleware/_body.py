"""Reading a response body without taking it from the caller.

seawall reads an error body (up to 64 KiB) to classify it; the LLM plugin
reads a successful JSON body to price it. Either way the caller must still be
able to read all of it, through ``read()``/``text()``/``json()`` and through
``resp.content``. We read from the original stream and put a fresh
``StreamReader`` in ``resp.content`` that replays what we read, followed by
whatever we did not read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import ClientResponse, StreamReader

__all__ = ["ERROR_BODY_LIMIT", "peek_body", "tap_body"]

#: Most bytes of an error body read for classification.
ERROR_BODY_LIMIT = 64 * 1024

# Running pump tasks, held strongly until done (the loop keeps only weak references).
# StreamReader has __slots__ without __weakref__, so it cannot key a WeakKeyDictionary.
_pumps: set[asyncio.Task[None]] = set()


def _start_pump(old: StreamReader, new: StreamReader, tap: Callable[[bytes], None] | None) -> None:
    task = asyncio.get_running_loop().create_task(_pump(old, new, tap))
    _pumps.add(task)
    task.add_done_callback(_pumps.discard)


def _fresh_reader(resp: ClientResponse) -> StreamReader:
    old = resp.content
    # The new reader shares the connection's protocol, so flow control (pausing
    # the socket while the caller is slow) keeps working for the pumped rest.
    protocol: Any = old._protocol
    return StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())


async def _pump(
    old: StreamReader, new: StreamReader, tap: Callable[[bytes], None] | None = None
) -> None:
    try:
        async for chunk in old.iter_any():
            new.feed_data(chunk)
            if tap is not None:
                tap(chunk)  # after feeding: the caller is never kept waiting for it
    except asyncio.CancelledError:
        new.set_exception(aiohttp.ClientConnectionError("response closed"))
        raise
    except BaseException as exc:
        new.set_exception(exc if isinstance(exc, Exception) else aiohttp.ClientPayloadError())
        return
    new.feed_eof()
    if tap is not None:
        tap(b"")


async def peek_body(resp: ClientResponse, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of ``resp``'s body, leaving the whole body readable.

    Returns ``None`` without reading when the declared length is above
    ``limit``. When a body of unknown length turns out longer, returns the
    first ``limit`` bytes and the caller gets them back followed by the rest.
    """
    length = resp.content_length
    if length is not None and length > limit:
        return None
    old = resp.content
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await old.readany()
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    data = b"".join(parts)
    new = _fresh_reader(resp)
    if data:
        new.feed_data(data)
    if old.at_eof():
        new.feed_eof()
    else:
        _start_pump(old, new, None)
    resp.content = new
    return data[:limit]


def tap_body(resp: ClientResponse, tap: Callable[[bytes], None]) -> None:
    """Show ``tap`` every chunk of ``resp``'s body as the caller gets it; ``b""`` at the end.

    Nothing is buffered: each chunk is handed on to the caller (through a
    fresh ``resp.content``) as soon as it arrives, and only then shown to
    ``tap``, which must be quick and must not raise. Used to read the usage
    in the last chunks of a streamed (SSE) LLM answer.
    """
    old = resp.content
    new = _fresh_reader(resp)
    _start_pump(old, new, tap)
    resp.content = new
