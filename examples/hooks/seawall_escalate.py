"""``seawall_escalate``: post incidents to a chat webhook.

seawall escalates what a human must see (401/403, TLS certificate errors,
critical operations failing), folded per key and category. This sink posts
each incident's one-line summary to a Slack-style incoming webhook. It
returns a coroutine, which seawall awaits off the request path with a
timeout; its own session has no middleware, so a failing webhook can never
escalate about itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

import seawall


class ChatWebhook:
    """Posts ``{"text": incident.summary()}`` to ``url`` for HIGH and CRITICAL incidents."""

    def __init__(self, url: str) -> None:
        self.url = url

    @seawall.hookimpl
    def seawall_escalate(self, incident: seawall.Incident) -> Any:
        if incident.severity < seawall.Severity.HIGH:
            return None
        return self.post({"text": incident.summary(), "incident": incident.as_dict()})

    async def post(self, payload: dict[str, Any]) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with (
            aiohttp.ClientSession(timeout=timeout, middlewares=()) as session,
            session.post(self.url, json=payload) as resp,
        ):
            resp.raise_for_status()


async def main() -> list[dict[str, Any]]:
    """A call that fails authentication; return what the webhook received."""
    received: list[dict[str, Any]] = []

    async def webhook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hooks/incidents", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/incidents"

    async def fetch_invoices() -> str:
        raise PermissionError("401 Unauthorized: invalid api key sk-test-1234567890abcdef")

    sw = seawall.Seawall(
        plugins=[ChatWebhook(url)],
        blocked=["seawall.builtin.logging_sink"],  # only the webhook, not the log
        entrypoints=False,
    )
    try:
        await sw.call(fetch_invoices, key="billing-api")
    except PermissionError as exc:
        print(f"the call failed: {type(exc).__name__}")
    finally:
        await sw.aclose()  # delivers queued incidents (bounded), then stops the worker
        await runner.cleanup()
    for message in received:
        print(f"webhook got: {message['text']}")
    return received


if __name__ == "__main__":
    asyncio.run(main())
