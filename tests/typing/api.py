"""Type-checked, never run: the public API as users write it."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

import seawall


async def use() -> None:
    sw = seawall.Seawall(
        policy=seawall.Policy(retry=seawall.RetryPolicy(max_attempts=4)),
        routes={
            "api.example.com": seawall.Policy.for_llm()
            if hasattr(seawall.Policy, "for_llm")
            else seawall.Policy()
        },
    )
    async with aiohttp.ClientSession(middlewares=[sw.middleware()]) as session:
        with seawall.context(critical=True), seawall.deadline(2.0):
            async with session.get("http://127.0.0.1:1/") as resp:
                await resp.read()

    async def fetch(n: int) -> str:
        return str(n)

    text: str = await sw.call(fetch, 1, key="fetch")

    @sw.protect(key="search")
    async def search(q: str) -> list[str]:
        return [q]

    found: list[str] = await search("x")
    health: Mapping[str, object] = sw.health()
    del text, found, health
    await sw.aclose()


async def names_of_the_original_design(sw: seawall.Seawall) -> None:
    from decimal import Decimal
    from typing import assert_type

    from seawall.costs import ModelPrice, model_price
    from seawall.guard import BreakerGuard

    async with sw.breaker("payments") as guard:
        assert_type(guard, BreakerGuard)
    with sw.breaker("payments") as sync_guard:  # in a thread
        assert_type(sync_guard, BreakerGuard)
    found = model_price("gpt-4o")
    assert_type(found, ModelPrice | None)
    if found is not None:
        assert_type(found.input_per_token, Decimal)
    seawall.RetryPolicy(jitter="proportional", jitter_factor=0.2)
    stats: dict[str, object] = sw.classifier_stats()
    print(stats["cache_hit_rate"], stats["patterns_loaded"])
    sw.reset_metrics()
