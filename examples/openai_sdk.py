"""The OpenAI SDK over aiohttp with seawall: retries, shared cooldowns and costs for free.

Run it as it is (it starts a fake OpenAI server on 127.0.0.1 that fails once
with a 503 and once with a 429), or point it at a real endpoint:
``python examples/openai_sdk.py https://api.openai.com/v1`` (OPENAI_API_KEY set).
"""

from __future__ import annotations

import asyncio
import os
import sys

import openai
from httpx_aiohttp.httpx2 import AiohttpTransport

import seawall
from seawall.testing import FakeProvider, openai_error, status


async def ask(base_url: str, api_key: str) -> None:
    sw = seawall.Seawall(routes={"127.0.0.1": seawall.Policy.for_llm(key="model")})
    async with sw.session() as session:
        http = openai.DefaultAioHttpClient(transport=AiohttpTransport(client=session))
        # max_retries=0: seawall retries, the SDK must not multiply attempts.
        client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, max_retries=0, http_client=http
        )
        answer = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}]
        )
        print("answer:", answer.choices[0].message.content)
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Count to three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                print("chunk:", chunk.choices[0].delta.content.strip())
    report = sw.costs()
    print(f"calls: {report['calls']}, cost: ${report['cost_usd']:.6f}")
    for key, entry in report["keys"].items():
        print(
            f"{key}: failed attempts {entry['failed_attempts']}, models {sorted(entry['models'])}"
        )


async def main() -> None:
    if len(sys.argv) > 1:
        await ask(sys.argv[1], os.environ["OPENAI_API_KEY"])
        return
    async with FakeProvider() as fake:
        fake.then(
            status(503),
            openai_error(429, "rate_limit_exceeded", headers={"retry-after-ms": "100"}),
        )
        await ask(fake.url + "/v1", "sk-fake")
        print(f"the fake server was called {fake.hits} times")


if __name__ == "__main__":
    asyncio.run(main())
