"""A plugin that blocks in a thread, and what it does to the event loop's callers.

Known defect (see docs/sync.md, "Threads"): plugins (classifiers, backoff, events) are
called under the key's lock, one of ``LOCK_STRIPES`` shared locks, which the event loop
also takes around each call's updates. A sync caller's plugin that blocks therefore
blocks the event loop thread as soon as it touches that key, or any key sharing the
stripe, and with it every async caller. The fix calls plugins outside the lock.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import seawall
from seawall.outcome import Classification, Outcome

GUARD = 10.0  # seconds: how long the plugin blocks at most (a hang guard, never a target)


class BlocksInThreads:
    """Classifies nothing; in a thread other than the event loop's, waits to be released."""

    def __init__(self, loop_thread: threading.Thread) -> None:
        self.loop_thread = loop_thread
        self.entered = threading.Event()
        self.release = threading.Event()
        self.left = threading.Event()

    @seawall.hookimpl
    def seawall_classify(self, outcome: Outcome) -> Classification | None:
        if threading.current_thread() is not self.loop_thread:
            self.entered.set()
            self.release.wait(GUARD)  # the hang guard: it leaves by itself in the end
            self.left.set()
        return None


async def test_a_plugin_blocking_in_a_thread_does_not_stall_the_event_loop() -> None:
    plugin = BlocksInThreads(threading.current_thread())
    sw = seawall.Seawall(plugins=[plugin], entrypoints=False)

    def failing() -> None:
        raise ConnectionResetError("reset")  # classified: the plugin is asked

    def in_thread() -> None:
        policy = seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1))
        with pytest.raises(ConnectionResetError):
            sw.using(key="k", policy=policy).call_sync(failing)

    worker = asyncio.ensure_future(asyncio.to_thread(in_thread))
    assert await asyncio.to_thread(plugin.entered.wait, GUARD)
    try:

        async def answer() -> int:
            return 1

        # The loop's own call on the same key, while the thread's plugin still blocks.
        assert await sw.call(answer, key="k") == 1
        blocked_loop = plugin.left.is_set()  # the loop's call waited for the plugin to leave
    finally:
        plugin.release.set()
        await worker
    assert not blocked_loop, "the event loop waited for a plugin blocking in another thread"
