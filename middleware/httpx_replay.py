"""What an httpx transport hands the caller after reading a body's start: the chunks
read, then the rest of the original stream (``seawall.httpx_core`` reads; this replays).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

__all__ = ["AsyncReplay", "Replay", "Resumed", "SyncReplay"]


class Replay:
    """A body's chunks already read, then the rest of the original stream.

    ``tap`` sees each chunk before it is handed on, then ``b""`` once when the
    body ends, however it ends: read to its end, broken off (the read raised),
    closed (``aclose``/``close``), its iteration left (the caller broke out of
    its loop, its task was cancelled: the iterator's ``finally``), or this
    stream dropped unread (a finalizer holding the tap alone, not run at exit).
    """

    def __init__(
        self,
        head: list[bytes],
        rest: Any,
        original: Any,
        tap: Callable[[bytes], None] | None = None,
    ) -> None:
        self._head = head
        self._rest = rest  # the original's iterator, part read; None: not started
        self._original = original
        self._tap = tap
        self._end: weakref.finalize[Any, Any] | None = None
        if tap is not None:
            self._end = weakref.finalize(self, tap, b"")
            self._end.atexit = False

    def _take_head(self) -> list[bytes]:
        head, self._head = self._head, []
        return head

    def _pass(self, chunk: bytes) -> bytes:
        if self._tap is not None:
            self._tap(chunk)  # before handing it on: an SDK stops reading at "[DONE]"
        return chunk

    def _finish(self) -> None:
        self._tap = None
        end, self._end = self._end, None
        if end is not None:
            end()  # the tap sees b"" once, and is forgotten


class AsyncReplay(Replay):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            for chunk in self._take_head():
                yield chunk
            async for chunk in self._rest or aiter(self._original):
                yield self._pass(chunk)
        finally:
            self._finish()

    async def aclose(self) -> None:
        self._finish()  # an SDK closes the stream without reading past its end
        if isinstance(self._rest, Resumed):
            self._rest.cancel()  # the read left going for a caller who did not read on
        await self._original.aclose()


class SyncReplay(Replay):
    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._take_head()
            for chunk in self._rest or iter(self._original):
                yield self._pass(chunk)
        finally:
            self._finish()

    def close(self) -> None:
        self._finish()
        self._original.close()


class Resumed:
    """The rest of an async body whose next read was still going when its reader stopped
    waiting: that read's chunk first, then the original iterator's."""

    def __init__(self, pending: asyncio.Future[bytes | None], rest: Any) -> None:
        self._pending = pending
        self._rest = rest
        # A read that fails after nobody waits for it is no "exception never retrieved".
        pending.add_done_callback(lambda read: read.cancelled() or read.exception())

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = await self._pending
        if chunk is None:
            return
        yield chunk
        async for chunk in self._rest:
            yield chunk

    def cancel(self) -> None:
        self._pending.cancel()
