"""The Anthropic SDK through seawall's httpx2 transport: a 529 is waited out, costs counted.

Run it as it is (it starts a fake Anthropic server on 127.0.0.1 that answers
529 once), or ``python examples/anthropic_sdk.py https://api.anthropic.com``
with ANTHROPIC_API_KEY set.
"""

from __future__ import annotations

import asyncio
import os
import sys

import anthropic
import httpx2

import seawall
from seawall.testing import FakeProvider, anthropic_error

MODEL = "claude-3-5-haiku-latest"


async def ask(base_url: str, api_key: str) -> None:
    # Short backoff so the demo is quick; the LLM preset would wait longer after a 529.
    retry = seawall.RetryPolicy(
        max_attempts=3, base_delay=0.1, max_delay=1.0, retry_methods=["POST"]
    )
    sw = seawall.Seawall(routes={"127.0.0.1": seawall.Policy.for_llm(retry=retry)})
    # The SDK takes an httpx2 client; seawall's transport for it (seawall.httpx2).
    http = httpx2.AsyncClient(transport=sw.httpx_transport(package="httpx2"))
    # max_retries=0: seawall retries, the SDK must not multiply attempts.
    async with anthropic.AsyncAnthropic(
        base_url=base_url, api_key=api_key, max_retries=0, http_client=http
    ) as client:
        message = await client.messages.create(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Say hello"}]
        )
        print("answer:", message.content[0].text)  # type: ignore[union-attr]
        async with client.messages.stream(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Count to three"}]
        ) as stream:
            async for text in stream.text_stream:
                print("chunk:", text.strip())
    report = sw.costs()
    print(f"calls: {report['calls']}, cost: ${report['cost_usd']:.6f}")


async def main() -> None:
    if len(sys.argv) > 1:
        await ask(sys.argv[1], os.environ["ANTHROPIC_API_KEY"])
        return
    async with FakeProvider(flavor="anthropic") as fake:
        fake.then(anthropic_error(529, "overloaded_error"))
        await ask(fake.url, "sk-ant-fake")
        print(f"the fake server was called {fake.hits} times")


if __name__ == "__main__":
    asyncio.run(main())
