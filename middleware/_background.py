"""An event loop of seawall's own, in a daemon thread, for work no loop would run.

The escalator delivers incidents of callers without a running loop on it
(``seawall.escalation``): a program that never starts asyncio still tells
its sinks. Daemon, so it never keeps the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from typing import Any

__all__ = ["alive", "cancel_and_wait", "start_loop", "stop_loop"]


def alive(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` runs now (work handed to it will be done)."""
    return loop.is_running() and not loop.is_closed()


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` (of the running loop) and wait until it has ended.

    The task's own ``CancelledError`` ends here; the caller's does not. A caller
    cancelled while it waits (a shutdown under ``asyncio.timeout``, Ctrl-C's
    runner) sees ``CancelledError``, even when the task's end reached it first:
    ``contextlib.suppress(CancelledError)`` around the await swallows both,
    and the caller's close would go on as if nobody had asked it to stop.
    """
    current = asyncio.current_task()
    asked = 0 if current is None else current.cancelling()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):  # the task's, or the caller's: asked
        await task
    if current is not None and current.cancelling() > asked:
        raise asyncio.CancelledError  # the caller's own: not ours to swallow


def start_loop(name: str, owner: object | None = None) -> asyncio.AbstractEventLoop:
    """A new loop running in a new daemon thread called ``name``; ``stop_loop`` stops it
    (its thread then closes it), and so does the garbage collection of ``owner``."""
    loop = asyncio.new_event_loop()
    # Not waited for: the caller may hold a key's lock. What it hands over with
    # ``call_soon_threadsafe`` before the thread runs the loop waits in the loop.
    threading.Thread(target=_serve, args=(loop,), name=name, daemon=True).start()
    if owner is not None:
        # A Seawall dropped without aclose() must not leave an idle thread behind: one
        # per Seawall, for a program that makes many. (Work on the loop that holds the
        # owner, an incident being delivered, keeps it alive until that work is done.)
        weakref.finalize(owner, stop_loop, loop)
    return loop


def stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Stop ``loop`` (made by ``start_loop``) from any thread; its thread then closes it."""
    if not loop.is_closed():
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            loop.call_soon_threadsafe(loop.stop)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """Run ``loop`` in this thread until it is stopped, then close it."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        pending = asyncio.all_tasks(loop)
        if pending:  # a sink's session closing, say: a second to finish, then cancelled
            loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
