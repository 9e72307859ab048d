"""``seawall_classify``: retry a 404 that only means "not there yet".

Right after an object is created, a read from an eventually consistent
store may answer 404 for a moment. This plugin makes a 404 on ``/objects/``
retryable at most twice, without counting it against the upstream's breaker;
every other answer is left to the built-in classifiers.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

import seawall


class ReadAfterWrite:
    """A 404 on ``/objects/...`` is "not replicated yet": retry it, twice at most."""

    @seawall.hookimpl
    def seawall_classify(self, outcome: seawall.Outcome) -> seawall.Classification | None:
        if outcome.status != 404 or outcome.url is None:
            return None  # defer: the built-in classifiers decide
        if not outcome.url.path.startswith("/objects/"):
            return None
        return seawall.Classification(
            category=seawall.Category.SERVER,  # in the default RetryPolicy.retry_on
            retryable=True,
            counts_as_failure=False,  # the upstream is healthy: do not trip the breaker
            max_retries=2,
            reason="HTTP 404 on a fresh object: not replicated yet",
        )


async def main() -> list[int]:
    """Read an object that appears on the third try; return the statuses the server sent."""
    sent: list[int] = []

    async def get_object(_request: web.Request) -> web.Response:
        status = 404 if len(sent) < 2 else 200
        sent.append(status)
        return web.json_response({"id": 42}, status=status)

    app = web.Application()
    app.router.add_get("/objects/{id}", get_object)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/objects/42"

    sw = seawall.Seawall(plugins=[ReadAfterWrite()], entrypoints=False)
    try:
        async with sw.session() as session, session.get(url) as resp:
            print(f"GET {url}: HTTP {resp.status} after the server sent {sent}")
    finally:
        await sw.aclose()
        await runner.cleanup()
    return sent


if __name__ == "__main__":
    asyncio.run(main())
