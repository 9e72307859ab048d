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

__all__ = ["alive", "start_loop", "stop_loop"]


def alive(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` runs now (work handed to it will be done)."""
    return loop.is_running() and not loop.is_closed()


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
