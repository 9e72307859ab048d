"""The aiohttp client middleware: ``ClientSession(middlewares=[sw.middleware()])``.

Per-request state lives in locals and closures, never on the instance, so one
middleware serves any number of concurrent requests.

On LLM routes (``Policy.llm`` or a well-known provider host) it also keys the
call by the JSON body's ``model`` when the policy says ``key="model"``, and
prices successful answers (``seawall.costs``): a JSON answer is read (and
replayed to the caller), a streamed one is watched as it passes, never held.
Once the response is returned to the caller, nothing retries it.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from aiohttp.payload import BytesPayload

from seawall._body import ERROR_BODY_LIMIT, peek_body, tap_body
from seawall.context import current_context
from seawall.engine import Attempt, CallSpec
from seawall.llm import MODEL_BODY_LIMIT, model_from_json

if TYPE_CHECKING:
    from seawall.engine import Seawall
    from seawall.policy import Policy

__all__ = ["SeawallMiddleware"]

_STREAMING = "text/event-stream"


def _replayable(req: ClientRequest) -> bool:
    """Whether ``req``'s body can be sent again: a consumed async generator cannot."""
    body: Any = req.body
    return not getattr(body, "consumed", False)


def _release(resp: ClientResponse) -> None:
    resp.release()


async def _model_key(key: str, req: ClientRequest) -> str:
    """``key#model`` when the body is in-memory JSON naming a model; else ``key``.

    Only bytes payloads (``json=``, ``data=b"..."``, what the SDKs send) up to
    ``MODEL_BODY_LIMIT`` are looked at: a stream is never consumed.
    """
    body = req.body
    if not isinstance(body, BytesPayload) or (body.size or 0) > MODEL_BODY_LIMIT:
        return key
    model = model_from_json(await body.as_bytes())
    return f"{key}#{model}" if model else key


async def _watch_cost(sw: Seawall, key: str, url: str, resp: ClientResponse) -> None:
    """Read the usage of a successful LLM answer, leaving the body whole for the caller."""
    from seawall import costs

    content_type = resp.content_type
    if content_type == _STREAMING:

        def done(usage: costs.Usage) -> None:
            costs.account(sw, key, url, usage, streamed=True)

        tap_body(resp, costs.StreamUsage(done))
        return
    if content_type != "application/json":
        return
    try:
        body = await peek_body(resp, costs.SUCCESS_BODY_LIMIT)
    except BaseException:
        resp.close()
        raise
    usage = costs.usage_from_json(body) if body else None
    if usage is not None:
        costs.account(sw, key, url, usage)


class SeawallMiddleware:
    """Runs every request of a session through ``Seawall.run``."""

    __slots__ = ("seawall",)

    def __init__(self, seawall: Seawall) -> None:
        self.seawall = seawall

    def __call__(self, req: ClientRequest, handler: ClientHandlerType) -> Awaitable[ClientResponse]:
        # Not a coroutine itself: it hands aiohttp the engine's coroutine, so every
        # resumption of the request passes through one frame fewer.
        key, policy, llm = self.seawall.route(req.url)
        if policy.key == "model":
            return self._by_model(key, policy, llm, req, handler)
        return self._run(key, policy, llm, req, handler)

    async def _by_model(
        self, key: str, policy: Policy, llm: bool, req: ClientRequest, handler: ClientHandlerType
    ) -> ClientResponse:
        key = await _model_key(key, req)
        return await self._run(key, policy, llm, req, handler)

    def _run(
        self, key: str, policy: Policy, llm: bool, req: ClientRequest, handler: ClientHandlerType
    ) -> Awaitable[ClientResponse]:
        sw = self.seawall
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
            llm=llm,
        )

        async def attempt(_number: int) -> Attempt:
            resp = await handler(req)
            status = resp.status
            if status < 400:
                if llm and method != "HEAD":
                    await _watch_cost(sw, key, str(spec.redacted_url), resp)
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

        response: Awaitable[ClientResponse] = sw.run(spec, attempt)
        return response
