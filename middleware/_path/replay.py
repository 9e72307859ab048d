"""Whether a call of a plain function can be made again with the same arguments.

``sw.call(upload, chunks())`` hands the function a generator (a streamed request
body): the first attempt consumes it, and a retry would give the function an
exhausted one, so the upstream would get an empty body and the caller a
success. A call whose arguments include a generator, an async generator or a
readable file-like object is replayable only while each is untouched (not
started; at its start); otherwise it is not retried
(``StopReason.NOT_REPLAYABLE``). A file given to write to does not count.
"""

from __future__ import annotations

import inspect
import io
import sys
from collections.abc import Callable, Mapping
from types import AsyncGeneratorType, GeneratorType
from typing import Any

__all__ = ["replayable_args"]

_STREAMS = (GeneratorType, AsyncGeneratorType, io.IOBase)


def replayable_args(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Callable[[], bool] | None:
    """``CallSpec.replayable`` for a call with ``args`` and ``kwargs``: ``None`` (always
    replayable) when none of them is read as it is used; else a check, asked only
    when a retry is considered."""
    once = [arg for arg in args if isinstance(arg, _STREAMS) and _read_as_used(arg)]
    if kwargs:
        once += [a for a in kwargs.values() if isinstance(a, _STREAMS) and _read_as_used(a)]
    if not once:
        return None
    return lambda: all(_untouched(arg) for arg in once)


def _read_as_used(arg: object) -> bool:
    """A generator, or a file that can be read (a log file or ``sys.stdout`` given to
    write to does not stop retries)."""
    if not isinstance(arg, io.IOBase):
        return True
    try:
        return not arg.closed and arg.readable()
    except (OSError, ValueError):
        return False


def _untouched(arg: object) -> bool:
    if isinstance(arg, GeneratorType):
        return inspect.getgeneratorstate(arg) == inspect.GEN_CREATED
    if isinstance(arg, AsyncGeneratorType):
        if sys.version_info >= (3, 12):
            return inspect.getasyncgenstate(arg) == inspect.AGEN_CREATED
        # No getasyncgenstate on 3.11: an unstarted frame is at its first instruction there
        # (not on 3.13, where an untouched body was taken for a consumed one: not retried).
        frame = arg.ag_frame
        return frame is not None and not arg.ag_running and frame.f_lasti == 0
    assert isinstance(arg, io.IOBase)
    try:
        return not arg.closed and arg.seekable() and arg.tell() == 0
    except (OSError, ValueError):  # closed, or not seekable after all
        return False
