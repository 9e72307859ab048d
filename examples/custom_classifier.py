"""A payment gateway's own error codes, taught to seawall with two plugins.

The (imaginary) gateway answers ``402`` for every payment problem and says
what went wrong in a JSON body: ``{"error": {"code": "processor_unavailable"}}``
is a passing fault worth retrying, ``card_declined`` is final. When it is
overloaded it may even answer ``200`` with ``X-Gateway-Status: busy`` and no
charge made. seawall's built-in table would treat every 402 as a client error
and every 200 as a success; ``GatewayClassifier`` knows better.
``GatewayBackoff`` waits on a fixed schedule for the gateway's retryable codes.

Run it from the repository root::

    python examples/custom_classifier.py
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import web

import seawall

#: Gateway error codes that a later attempt can get past.
RETRYABLE_CODES = frozenset({"processor_unavailable", "try_again_later"})

#: Seconds to wait before attempt 2, 3, ... for a retryable gateway code.
SCHEDULE = (0.05, 0.1, 0.2)


def gateway_code(outcome: seawall.Outcome) -> str | None:
    """The ``error.code`` of a gateway JSON body, or ``None``.

    ``outcome.body`` holds the first 64 KiB of a 4xx/5xx body, or ``None``
    when it was not read (a ``HEAD``, a stream, or a larger declared length).
    """
    if outcome.body is None or "json" not in outcome.content_type:
        return None
    try:
        data = json.loads(outcome.body)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


class GatewayClassifier:
    """Classifies the gateway's answers; defers everything else to seawall."""

    def __init__(self, host: str) -> None:
        self.host = host

    @seawall.hookimpl
    def seawall_classify(self, outcome: seawall.Outcome) -> seawall.Classification | None:
        if outcome.url is None or outcome.url.host != self.host:
            return None  # not the gateway: let the built-in classifiers decide
        if outcome.status == 200 and outcome.headers.get("X-Gateway-Status") == "busy":
            return seawall.Classification(
                category=seawall.Category.SERVER,
                severity=seawall.Severity.MEDIUM,
                retryable=True,
                counts_as_failure=True,
                reason="gateway busy: no charge was made",
            )
        if outcome.status != 402:
            return None
        code = gateway_code(outcome)
        if code in RETRYABLE_CODES:
            return seawall.Classification(
                category=seawall.Category.SERVER,
                severity=seawall.Severity.MEDIUM,
                retryable=True,
                counts_as_failure=True,
                reason=f"gateway: {code}",
            )
        return seawall.Classification(
            category=seawall.Category.CLIENT,
            reason=f"gateway: {code or 'payment refused'}",
        )


class GatewayBackoff:
    """Waits on ``SCHEDULE`` after a retryable gateway answer."""

    @seawall.hookimpl
    def seawall_backoff(self, attempt: int, classification: seawall.Classification) -> float | None:
        if not classification.reason.startswith("gateway"):
            return None  # the built-in strategy of the policy decides
        return SCHEDULE[min(attempt, len(SCHEDULE)) - 1]


class Gateway:
    """A local stand-in for the payment gateway, answering from a script."""

    def __init__(self) -> None:
        self.script: list[web.Response] = []
        self.hits = 0

    async def charge(self, request: web.Request) -> web.Response:
        self.hits += 1
        await request.read()
        if self.script:
            return self.script.pop(0)
        return web.json_response({"id": f"ch_{self.hits}", "status": "paid"})


def refusal(code: str) -> web.Response:
    return web.json_response({"error": {"code": code}}, status=402)


async def main() -> dict[str, Any]:
    """Three charges against a local gateway; return what happened to each."""
    gateway = Gateway()
    app = web.Application()
    app.router.add_post("/charges", gateway.charge)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/charges"

    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=4)),
        plugins=[GatewayClassifier("127.0.0.1"), GatewayBackoff()],
        entrypoints=False,
    )
    scenarios = {
        "processor_unavailable, then paid": [refusal("processor_unavailable")],
        "card_declined": [refusal("card_declined")],
        "200 busy, then paid": [
            web.json_response({"status": "queued"}, headers={"X-Gateway-Status": "busy"})
        ],
    }
    results: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession(middlewares=[sw.middleware()]) as session:
            for number, (name, script) in enumerate(scenarios.items(), start=1):
                gateway.script = list(script)
                before = gateway.hits
                # POST is retried only because the request carries an Idempotency-Key.
                headers = {"Idempotency-Key": f"order-{number}"}
                async with session.post(url, json={"cents": 1999}, headers=headers) as resp:
                    body = await resp.json()
                hits = gateway.hits - before
                results[name] = {"status": resp.status, "hits": hits, "body": body}
                print(f"{name}: HTTP {resp.status} {body} after {hits} gateway call(s)")
    finally:
        await sw.aclose()
        await runner.cleanup()
    return results


if __name__ == "__main__":
    asyncio.run(main())
