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
import weakref
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import ClientResponse, StreamReader

__all__ = ["ERROR_BODY_LIMIT", "ERROR_BODY_WAIT", "peek_body", "tap_body"]

#: Most bytes of an error body read for classification.
ERROR_BODY_LIMIT = 64 * 1024

#: Most seconds spent reading an error body for classification. A body that comes slower
#: (an upstream dripping it) is classified from what came by then (its status, headers and
#: the start read); the caller gets the whole body all the same, and gets it at once
#: instead of after the drip (bare aiohttp hands the status over before the body).
ERROR_BODY_WAIT = 1.0


class _Gate:
    """Flow control for the replaying reader, in place of the connection's protocol.

    The replaying reader must not pause or resume the real protocol: by the
    time it fills up, the HTTP parser may have finished the message, and
    aiohttp's parser asserts on that. Its "pause" ends the pump instead,
    which leaves the original stream unread (that stream pauses the socket as
    usual), and its "resume" starts a pump again.

    No task waits while the caller does not read: a caller may drop a
    response unread and unreleased (an SDK stream left in a broken-off loop),
    and aiohttp alone frees it once its body has arrived or its connection
    closed, since nothing refers to it then. A pump waiting for a reader that
    never came kept it, its buffers and the task, for ever.
    """

    def __init__(self) -> None:
        self._reading_paused = False
        self.connected = True
        #: Starts the pump again: set while it is parked.
        self.restart: Callable[[], None] | None = None

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self, resume_parser: bool = True) -> None:
        self._reading_paused = False
        restart, self.restart = self.restart, None
        if restart is not None:
            restart()


class _ReplayReader(StreamReader):
    """The caller's ``resp.content``: what we read, then the rest, pumped from the original.

    When aiohttp gives up on the body (the response was released or closed
    early) it sets an exception here, which stops the pump.

    With a ``tap``, the reader tells it ``b""`` once when the body ends, however
    it ends: read whole (the pump), broken, released or closed before its end
    (``set_exception``), or the reader dropped with its pump parked (a
    finalizer: it holds the tap alone, never the reader, and is not run at
    interpreter exit).
    """

    __slots__ = ("__weakref__", "_end", "pump")

    def __init__(self, gate: _Gate, tap: Callable[[bytes], None] | None = None) -> None:
        protocol: Any = gate
        super().__init__(protocol, 2**16, loop=asyncio.get_running_loop())
        self.pump: asyncio.Task[None] | None = None
        self._end: weakref.finalize[Any, Any] | None = None
        if tap is not None:
            self._end = weakref.finalize(self, tap, b"")
            self._end.atexit = False

    def ended(self) -> None:
        """The body ended (whole or not): the tap sees ``b""``, the first time only."""
        end, self._end = self._end, None
        if end is not None:
            end()  # runs the tap once and forgets it

    def set_exception(self, *args: Any, **kwargs: Any) -> None:
        super().set_exception(*args, **kwargs)
        pump = self.pump
        if pump is not None and not pump.done() and pump is not asyncio.current_task():
            pump.cancel()
        self.ended()


#: Pump tasks still running (the loop keeps only weak references to tasks;
#: a dict keyed by reader would not do, ``StreamReader`` has no ``__weakref__``).
_pumps: set[asyncio.Task[None]] = set()


def _start_pump(
    old: StreamReader, new: _ReplayReader, gate: _Gate, tap: Callable[[bytes], None] | None
) -> None:
    task = asyncio.get_running_loop().create_task(_pump(old, new, gate, tap))
    new.pump = task
    _pumps.add(task)
    task.add_done_callback(_pumps.discard)


async def _pump(
    old: StreamReader, new: _ReplayReader, gate: _Gate, tap: Callable[[bytes], None] | None
) -> None:
    try:
        async for chunk in old.iter_any():
            new.feed_data(chunk)
            if tap is not None:
                tap(chunk)  # after feeding: the caller is never kept waiting for it
            if gate._reading_paused:  # the caller is slow: leave the rest in the socket
                gate.restart = lambda: _start_pump(old, new, gate, tap)
                return  # parked: the caller's next read starts a pump again
    except asyncio.CancelledError:
        if new.exception() is None:
            new.set_exception(aiohttp.ClientConnectionError("response closed"))
        raise
    except BaseException as exc:
        new.set_exception(exc if isinstance(exc, Exception) else aiohttp.ClientPayloadError())
        return
    new.feed_eof()
    new.ended()


async def peek_body(resp: ClientResponse, limit: int, wait: float | None = None) -> bytes | None:
    """Up to ``limit`` bytes of ``resp``'s body, leaving the whole body readable.

    Returns ``None`` without reading when the declared length is above
    ``limit``. When a body of unknown length (chunked, or decompressed by
    aiohttp) turns out longer, returns its first ``limit`` bytes and the
    caller gets them back followed by the rest. With ``wait``, what came
    within that many seconds (a read cut by the time takes nothing from the
    stream): the caller gets it back followed by the rest.

    Never more than ``limit`` bytes (and one to tell whether more follow) are
    taken from the stream, and the bytes returned are the very object the
    caller's reader replays: the body is held once, not copied (joining the
    chunks read makes one short-lived copy).
    """
    length = resp.content_length
    if length is not None and length > limit:
        return None
    old = resp.content
    parts: list[bytes] = []
    size = 0
    more = b""
    cut = asyncio.timeout(wait)
    try:
        async with cut:
            while size < limit:
                chunk = await old.read(limit - size)  # never more than what still fits
                if not chunk:
                    break
                parts.append(chunk)
                size += len(chunk)
            more = await old.read(1) if size >= limit and not old.at_eof() else b""
    except TimeoutError:
        if not cut.expired():
            raise  # aiohttp's own read timeout (a subclass): the body broke off
        # A slow body: what came (a cut read takes nothing from the stream), the rest after.
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    parts.clear()
    gate = _Gate()
    new = _ReplayReader(gate)
    if data:
        new.feed_data(data)
    if more:
        new.feed_data(more)
    if old.at_eof():
        new.feed_eof()
    else:
        _start_pump(old, new, gate, None)
    resp.content = new
    return data


def tap_body(resp: ClientResponse, tap: Callable[[bytes], None]) -> None:
    """Show ``tap`` every chunk of ``resp``'s body as the caller gets it; ``b""`` at the end.

    Nothing is buffered: each chunk is handed on to the caller (through a
    fresh ``resp.content``) as soon as it arrives, and only then shown to
    ``tap``, which must be quick and must not raise. ``b""`` comes once
    however the body ends: read to its end, broken off, released or closed
    by the caller before its end, or dropped unread (when the reader is
    collected; possibly in another thread). Used to read (and count) the
    usage of a streamed (SSE) LLM answer.
    """
    gate = _Gate()
    new = _ReplayReader(gate, tap)
    _start_pump(resp.content, new, gate, tap)
    resp.content = new
