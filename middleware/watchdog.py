"""Cheap per-attempt timeouts: one timer per 100 ms slot, not one per attempt.

``asyncio.timeout()`` schedules and cancels a timer handle for every attempt,
which was a third of seawall's success-path cost. Attempt limits are usually
long (30 s) and seldom reached, so they do not need a timer each: attempts
whose limit ends in the same ``GRAIN``-second slot share one ``call_at``
handle, created by the first of them. Registering is a set insertion.

A slot fires at its start, so a limit is enforced at most ``GRAIN`` seconds
*early*, never late: a deadline is never overrun. The engine uses this only
for limits of at least ``MIN_LIMIT`` seconds (at most 10 % early) and
``asyncio.timeout`` for shorter ones.

When a slot fires, each task still registered in it is cancelled; the engine
turns that cancellation into ``TimeoutError`` exactly as ``asyncio.timeout``
does (``Task.uncancel``), so a cancellation from outside is never mistaken
for a timeout.
"""

from __future__ import annotations

import asyncio
import weakref

__all__ = ["FIRED", "GRAIN", "MIN_LIMIT", "Members", "done", "timed_out", "watch"]

#: Width of a slot, in seconds.
GRAIN = 0.1

#: Shortest limit handled here; shorter ones use ``asyncio.timeout``.
MIN_LIMIT = 1.0


#: A slot's members: each watched task and its ``cancelling()`` count when it
#: was registered; ``FIRED`` is added once the slot has cancelled them.
Members = dict[object, int]

#: Marks a slot that has fired.
FIRED = object()


def done(members: Members, task: object) -> None:
    """The attempt ended: stop watching it (call before any other await)."""
    members.pop(task, None)


def timed_out(members: Members, task: asyncio.Task[object], cancelling: int) -> bool:
    """After a ``CancelledError``: True when it was the watchdog's, now undone.

    Like ``asyncio.timeout``: the cancellation is ours only when the slot
    fired and no other cancellation is pending on the task.
    """
    return FIRED in members and task.uncancel() <= cancelling


# Slots per event loop: a loop's handles only ever fire on that loop.
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, Members]] = (
    weakref.WeakKeyDictionary()
)


def _fire(slots: dict[int, Members], index: int) -> None:
    members = slots.pop(index, {})
    tasks = list(members)
    members[FIRED] = 0
    for task in tasks:
        task.cancel()  # type: ignore[attr-defined]  # every key but FIRED is a Task


# The last loop seen and its slots: nearly every call comes from the same loop,
# and a WeakKeyDictionary lookup costs more than everything else here.
_last: tuple[weakref.ref[asyncio.AbstractEventLoop], dict[int, Members]] | None = None


def _slots_of(loop: asyncio.AbstractEventLoop) -> dict[int, Members]:
    global _last
    last = _last
    if last is not None and last[0]() is loop:
        return last[1]
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = {}
    _last = (weakref.ref(loop), slots)
    return slots


def watch(task: asyncio.Task[object], seconds: float) -> Members:
    """Cancel ``task`` at most ``seconds`` from now (up to ``GRAIN`` sooner).

    Returns the slot's members, for ``done`` and ``timed_out``.
    """
    loop = task.get_loop()
    slots = _slots_of(loop)
    index = int((loop.time() + seconds) / GRAIN)  # floor: the slot starts before the limit
    members = slots.get(index)
    if members is None:
        members = slots[index] = {}
        loop.call_at(index * GRAIN, _fire, slots, index)
    members[task] = task.cancelling()
    return members
