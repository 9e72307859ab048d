"""The ASGI middleware's load shedder: requests in flight against ``max_concurrency``.

A request takes a slot when it arrives, or is shed (503 at once) when none is
free, and gives it back when the app returns. While the app waits for the
client to send more of the request body, the request gives its slot up: a
client that trickles its upload is the server's connection to bound (uvicorn's
``--limit-concurrency``, a proxy's body timeout), not the app's capacity, and
a few slow uploaders must not get every other caller shed. When the body data
arrives the request takes a slot again; if none is free it waits, first come
first served, for the next one given back (a request that was let in is never
shed later, and the app never runs more than ``max_concurrency`` requests at
once). Once the body is complete, waiting on the client (for a disconnect,
while a response streams) keeps the slot.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from seawall.events import Rejected
from seawall.problem import send_problem

if TYPE_CHECKING:
    from seawall.plugins.hooks import Hooks

__all__ = ["INBOUND_KEY", "Shedder", "Slot"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The key of ``Rejected`` events for requests shed by ``max_concurrency``.
INBOUND_KEY = "inbound"


class Shedder:
    """Slots for ``limit`` requests (``None``: count, never shed); one event loop, no locks."""

    def __init__(self, limit: int | None, retry_after: float) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.in_flight = 0  # requests holding a slot
        self.receiving = 0  # requests let in, waiting for their client's body, no slot held
        self.shed = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    def admit(self) -> bool:
        """Take a slot for a new request; ``False`` (and counted as shed) when none is free."""
        if self.limit is not None and self.in_flight >= self.limit:
            self.shed += 1
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        """Give a slot back: to the first request waiting for one, else free."""
        for _ in range(len(self._waiting)):
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; in_flight is unchanged
                return
        self.in_flight -= 1

    async def take_back(self) -> None:
        """Take a slot again for a request already let in: wait for one when none is free."""
        if self.limit is None or (self.in_flight < self.limit and not self._waiting):
            self.in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed over as the request left: pass it on
            raise

    async def answer_shed(self, send: Send, hooks: Hooks) -> None:
        """The 503 of a shed request, and a ``Rejected`` event when anyone listens."""
        if hooks.has("seawall_event"):
            hooks.each(
                "seawall_event",
                event=Rejected(
                    key=INBOUND_KEY,
                    timestamp=time.time(),
                    reason="load_shedding",
                    retry_after=self.retry_after,
                ),
            )
        detail = (
            f"{self.in_flight} requests are in flight, the limit of this service "
            f"(max_concurrency={self.limit}); retry later"
        )
        await send_problem(send, 503, "overloaded", "Service overloaded", detail, self.retry_after)


class Slot:
    """One let-in request's hold on its slot, given up while its body is awaited."""

    __slots__ = ("body_done", "held", "receive", "shedder")

    def __init__(self, shedder: Shedder, receive: Receive) -> None:
        self.shedder = shedder
        self.receive = receive
        self.held = True
        self.body_done = False

    async def wrapped_receive(self) -> Message:
        """The app's ``receive``: without the slot while the client still owes body."""
        if self.body_done or not self.held:
            return await self.receive()
        shedder = self.shedder
        self.held = False
        shedder.release()
        shedder.receiving += 1
        try:
            message = await self.receive()
        finally:
            shedder.receiving -= 1
        if message.get("type") != "http.request" or not message.get("more_body", False):
            self.body_done = True
        await shedder.take_back()
        self.held = True
        return message

    def end(self) -> None:
        """The app returned (or raised): give the slot back if it is held."""
        if self.held:
            self.held = False
            self.shedder.release()
