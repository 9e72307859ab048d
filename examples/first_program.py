"""The README's first program: retries and the circuit breaker against a local upstream."""

import asyncio

import aiohttp
from aiohttp import web

import seawall

answers = iter([200, 503, 200])  # then 503 for ever: the upstream goes down


async def flaky(request: web.Request) -> web.Response:
    return web.Response(status=next(answers, 503))


async def main() -> None:
    app = web.Application()
    app.router.add_get("/", flaky)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()  # a local, flaky upstream
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"

    sw = seawall.Seawall(
        seawall.Policy(
            retry=seawall.RetryPolicy(max_attempts=2, base_delay=0.05),
            breaker=seawall.BreakerPolicy(
                failure_threshold=2,  # 2 failed calls open it
                probe_share=0,  # then one probe per recovery_timeout (30 s), never sooner
            ),
        )
    )
    async with aiohttp.ClientSession(middlewares=[sw.middleware()]) as session:
        for call in range(1, 6):
            try:
                async with session.get(url) as resp:
                    print(f"call {call}: HTTP {resp.status}")
            except seawall.CircuitOpenError as exc:
                print(f"call {call}: CircuitOpenError, not sent (retry in {exc.retry_after:.0f} s)")
    (key,) = sw.health()["keys"].values()
    print(f"{key['attempts']} attempts, {key['retries']} retries, breaker {key['state']}")
    await sw.aclose()
    await runner.cleanup()


asyncio.run(main())
