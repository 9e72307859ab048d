"""A fake OpenAI and Anthropic API on 127.0.0.1, for tests, examples and benchmarks.

Its documented home is ``seawall.testing`` (``from seawall.testing import
FakeProvider``); this module stays importable for old code.

It answers ``POST /v1/chat/completions`` (OpenAI), ``POST /v1/responses``
(OpenAI) and ``POST /v1/messages`` (Anthropic) in the providers' shapes
(any other path: the providers' 404, in the shape of the API it looks like),
streams SSE when the body says ``"stream": true``, and can be scripted to
fail: ``fake.then(openai_error(429, "insufficient_quota"))``. With
``rate=`` it enforces a token bucket like the providers do: answers carry
rate-limit headers and a request over the limit gets a 429 with
``retry-after-ms``.

::

    async with FakeProvider(rate=20) as fake:
        client = openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="sk-test")
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from seawall.testing.fake_answers import (
    FLAVORS,
    Handler,
    anthropic_error,
    check_options,
    openai_error,
    status,
)

__all__ = ["FLAVORS", "FakeProvider", "anthropic_error", "openai_error", "status"]


def _not_json(request: web.Request) -> Awaitable[web.StreamResponse]:
    """The 400 a real API gives a body that is not a JSON object, in its endpoint's shape."""
    message = "fake: the request body is not a JSON object (send json=..., not data=...)"
    if request.path.endswith("/messages"):
        return anthropic_error(400, "invalid_request_error", message=message)(request)
    return openai_error(400, "invalid_request_error", message=message)(request)


async def _unknown(request: web.Request) -> web.StreamResponse:
    """The 404 a real API gives a path it does not serve (a wrong ``base_url``, a typo), in
    its shape, so an SDK raises its own ``NotFoundError`` as it would in production."""
    await request.read()
    where = request.path[:200]  # (echoed: bounded)
    if "/messages" in where or request.headers.get("anthropic-version"):
        body: dict[str, Any] = {
            "type": "error",
            "error": {"type": "not_found_error", "message": f"Not Found: {where}"},
        }
    else:
        message = f"Invalid URL ({request.method} {where})"
        body = {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
    return web.json_response(body, status=404)


class FakeProvider:
    """The fake API server. Counters: ``hits``, ``served`` (2xx), ``rejected`` (429s).

    :param rate: requests per second the token bucket allows (``None``: no limit).
    :param burst: the bucket's size (default: ``rate``, at least 1).
    :param flavor: which rate-limit headers to send: ``"openai"``, ``"anthropic"``, or
        ``"none"`` (only ``retry-after-ms``/``retry-after`` on a 429).
    :param whole_seconds: a 429 says only ``retry-after`` in whole seconds (rounded
        up, no ``retry-after-ms``), as many proxies in front of LLM APIs do; with
        ``flavor="none"`` the only hint is then "come back in 1 s".
    :param chunks: how many content chunks a stream has.
    :param chunk_delay: seconds between streamed chunks.
    :param latency: seconds before answering.
    """

    def __init__(
        self,
        *,
        rate: float | None = None,
        burst: float | None = None,
        flavor: str = "openai",
        whole_seconds: bool = False,
        chunks: int = 5,
        chunk_delay: float = 0.0,
        latency: float = 0.0,
    ) -> None:
        check_options(rate, burst, flavor, chunks, chunk_delay, latency)
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else (rate or 1.0))
        self.flavor = flavor
        self.whole_seconds = whole_seconds
        self.chunks = chunks
        self.chunk_delay = chunk_delay
        self.latency = latency
        self.script: list[Handler] = []
        self.hits = 0
        self.served = 0
        self.rejected = 0
        self.bodies: list[dict[str, Any]] = []
        self.last_chunk_sent_at: float | None = None
        self.usage = {"input": 12, "output": 5, "cached": 4}
        self._tokens = self.burst
        self._refilled = time.monotonic()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._openai_chat)
        self.app.router.add_post("/v1/responses", self._openai_responses)
        self.app.router.add_post("/v1/messages", self._anthropic_messages)
        self.app.router.add_route("*", "/{path:.*}", _unknown)  # the others: the APIs' 404

    # --- lifecycle -----------------------------------------------------------

    async def start(self) -> str:
        """Listen on a free port of 127.0.0.1; return the base URL (no ``/v1``)."""
        if self._runner is not None:  # a second server would be left running, unclosed
            msg = f"FakeProvider is already serving at {self.url}; close() it first"
            raise RuntimeError(msg)
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        try:
            await site.start()
        except BaseException:  # (cancelled too) no half-started server left behind
            await runner.cleanup()
            raise
        self._runner = runner
        server: Any = site._server
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeProvider:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def then(self, *handlers: Handler) -> None:
        """Answer the next requests with ``handlers``, in turn, before the normal answers."""
        for handler in handlers:  # else every scripted request would be a bare 500
            if not callable(handler):
                msg = (
                    f"FakeProvider.then() takes answers such as openai_error(429, "
                    f"'rate_limit_exceeded') or status(503), not {handler!r}"
                )
                raise TypeError(msg)
        self.script.extend(handlers)

    # --- rate limit ----------------------------------------------------------

    def _take(self) -> tuple[bool, dict[str, str]]:
        """Take a token if there is one; the rate-limit headers to send either way."""
        if self.rate is None:
            return True, {}
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        allowed = self._tokens >= 1.0
        if allowed:
            self._tokens -= 1.0
        remaining = math.floor(self._tokens)
        limit = math.floor(self.burst)
        reset = (limit - remaining) / self.rate
        headers = self._limit_headers(limit, remaining, reset)
        if not allowed:
            wait = (1.0 - self._tokens) / self.rate
            if not self.whole_seconds:
                headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
            headers["retry-after"] = str(max(1, math.ceil(wait)))
        return allowed, headers

    def _limit_headers(self, limit: int, remaining: int, reset: float) -> dict[str, str]:
        if self.flavor == "none":
            return {}
        if self.flavor == "anthropic":
            at = datetime.fromtimestamp(time.time() + reset, tz=UTC)
            return {
                "anthropic-ratelimit-requests-limit": str(limit),
                "anthropic-ratelimit-requests-remaining": str(remaining),
                "anthropic-ratelimit-requests-reset": at.isoformat(timespec="milliseconds"),
            }
        return {
            "x-ratelimit-limit-requests": str(limit),
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": f"{round(reset * 1000)}ms",
        }

    async def _gate(
        self, request: web.Request
    ) -> tuple[web.StreamResponse | None, dict[str, Any], dict[str, str]]:
        """Count, read, script, rate-limit: (an early answer or None, the body, headers)."""
        self.hits += 1
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:  # not JSON, not UTF-8, or empty
            body = None
        if not isinstance(body, dict):
            body = None
        self.bodies.append(body or {})
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.script:
            return await self.script.pop(0)(request), body or {}, {}
        if body is None:  # the real APIs answer 400 before counting the request against a limit
            return await _not_json(request), {}, {}
        allowed, headers = self._take()
        if not allowed:
            self.rejected += 1
            if self.flavor == "anthropic":
                answer = await anthropic_error(429, "rate_limit_error", headers=headers)(request)
            else:
                answer = await openai_error(429, "rate_limit_exceeded", headers=headers)(request)
            return answer, body, headers
        self.served += 1
        return None, body, headers

    # --- the endpoints -------------------------------------------------------

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        early, body, headers = await self._gate(request)
        if early is not None:
            return early
        model = str(body.get("model", "gpt-4o"))
        u = self.usage
        usage = {
            "prompt_tokens": u["input"],
            "completion_tokens": u["output"],
            "total_tokens": u["input"] + u["output"],
            "prompt_tokens_details": {"cached_tokens": u["cached"]},
        }
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": model}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "Hello from the fake.", "refusal": None}
            answer = {
                **base,
                "object": "chat.completion",
                "choices": [
                    {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
                ],
                "usage": usage,
            }
            return web.json_response(answer, headers=headers)
        events: list[Any] = []
        for number in range(self.chunks):
            delta = {"content": f"chunk{number} "}
            if number == 0:
                delta["role"] = "assistant"
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            events.append({**base, "object": "chat.completion.chunk", "choices": [choice]})
        last = {"index": 0, "delta": {}, "finish_reason": "stop"}
        events.append({**base, "object": "chat.completion.chunk", "choices": [last]})
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            events.append(
                {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            )
        lines = [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]
        return await self._stream(request, lines, headers)

    async def _openai_responses(self, request: web.Request) -> web.StreamResponse:
        early, body, headers = await self._gate(request)
        if early is not None:
            return early
        u = self.usage
        answer = {
            "id": "resp_fake",
            "object": "response",
            "created_at": int(time.time()),
            "model": str(body.get("model", "gpt-4o")),
            "status": "completed",
            "output": [],
            "usage": {
                "input_tokens": u["input"],
                "input_tokens_details": {"cached_tokens": u["cached"]},
                "output_tokens": u["output"],
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": u["input"] + u["output"],
            },
        }
        return web.json_response(answer, headers=headers)

    async def _anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        early, body, headers = await self._gate(request)
        if early is not None:
            return early
        model = str(body.get("model", "claude-3-5-sonnet-latest"))
        u = self.usage
        usage = {
            "input_tokens": u["input"],
            "output_tokens": u["output"],
            "cache_read_input_tokens": u["cached"],
            "cache_creation_input_tokens": 0,
        }
        message: dict[str, Any] = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "Hello from the fake."}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            return web.json_response(message, headers=headers)
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**usage, "output_tokens": 1},
        }
        events: list[tuple[str, Any]] = [
            ("message_start", {"type": "message_start", "message": start}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
        ]
        for number in range(self.chunks):
            delta = {"type": "text_delta", "text": f"chunk{number} "}
            events.append(
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
            )
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": u["output"]},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        lines = [f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events]
        return await self._stream(request, lines, headers)

    async def _stream(
        self, request: web.Request, lines: list[str], headers: dict[str, str]
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **headers}
        )
        await response.prepare(request)
        for number, line in enumerate(lines):
            if number and self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            await response.write(line.encode())
        self.last_chunk_sent_at = time.monotonic()
        await response.write_eof()
        return response
