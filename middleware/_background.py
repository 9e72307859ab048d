"""An event loop of seawall's own, in a daemon thread, for work no loop would run.

The escalator delivers incidents of callers without a running loop on it
(``seawall.escalation``): a program that never starts asyncio still tells
its sinks. Daemon, so it never keeps the process from exiting.
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["alive", "start_loop"]


def alive(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` runs now (work handed to it will be done)."""
    return loop.is_running() and not loop.is_closed()


def start_loop(name: str) -> asyncio.AbstractEventLoop:
    """A new loop running in a new daemon thread called ``name``; stop it with
    ``loop.call_soon_threadsafe(loop.stop)`` (its thread then closes it)."""
    loop = asyncio.new_event_loop()
    # Not waited for: the caller may hold a key's lock. What it hands over with
    # ``call_soon_threadsafe`` before the thread runs the loop waits in the loop.
    threading.Thread(target=_serve, args=(loop,), name=name, daemon=True).start()
    return loop


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
