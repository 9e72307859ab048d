"""The aiohttp client middleware: ``ClientSession(middlewares=[sw.middleware()])``.

Per-request state lives in locals and closures, never on the instance, so one
middleware serves any number of concurrent requests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import ClientHandlerType, ClientRequest, ClientResponse

from seawall._body import ERROR_BODY_LIMIT, peek_body
from seawall.context import current_context
from seawall.engine import Attempt, CallSpec

if TYPE_CHECKING:
    from seawall.engine import Seawall

__all__ = ["SeawallMiddleware"]

_STREAMING = "text/event-stream"


def _replayable(req: ClientRequest) -> bool:
    """Whether ``req``'s body can be sent again: a consumed async generator cannot."""
    body: Any = req.body
    return not getattr(body, "consumed", False)


def _release(resp: ClientResponse) -> None:
    resp.release()


class SeawallMiddleware:
    """Runs every request of a session through ``Seawall.run``."""

    __slots__ = ("seawall",)

    def __init__(self, seawall: Seawall) -> None:
        self.seawall = seawall

    async def __call__(self, req: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        sw = self.seawall
        key, policy = sw.resolve(req.url)
        method = req.method
        spec = CallSpec(
            key=key,
            policy=policy,
            state=sw.state_for(key, policy),
            method=method,
            url=req.url,
            context=current_context(),
            idempotent=method in policy.retry.retry_methods or "Idempotency-Key" in req.headers,
            replayable=lambda: _replayable(req),
            discard=_release,
            http=True,
        )

        async def attempt(_number: int) -> Attempt:
            resp = await handler(req)
            status = resp.status
            if status < 400:
                return Attempt(resp, status, resp.headers)
            try:
                content_type = resp.content_type
                body = None
                if content_type != _STREAMING and method != "HEAD":
                    body = await peek_body(resp, ERROR_BODY_LIMIT)
            except BaseException:
                resp.close()
                raise
            return Attempt(resp, status, resp.headers, body, content_type)

        response: ClientResponse = await sw.run(spec, attempt)
        return response
