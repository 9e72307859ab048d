"""genai-prices is imported off the event loop, before the first answer needs it.

The first priced answer of a process imported genai-prices and read its
database on the event loop: 0.2-0.3 s during which every other request of the
app waited (max loop lag 0.15-0.16 s measured with a 0.5 s upstream, 0.014 s
after). Now the first route found to be an LLM route starts the import in a
thread of its own. Checked in a fresh interpreter (the test process has
imported genai-prices long before), with the ``import`` audit event, which
fires on the importing thread.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("genai_prices")

SCRIPT = r"""
import asyncio, json, sys, threading

importers = []

def audit(event, args):
    if event == "import" and args[0] == "genai_prices":
        importers.append(threading.current_thread().name)

sys.addaudithook(audit)

import seawall
from seawall.llm import prices
from seawall.testing import FakeProvider


async def main():
    async with FakeProvider(latency=float(sys.argv[1])) as fake:
        routes = {"127.0.0.1": seawall.Policy.for_llm(), "localhost": seawall.Policy()}
        sw = seawall.Seawall(routes=routes, entrypoints=False)
        async with sw.session() as session:
            plain = fake.url.replace("127.0.0.1", "localhost") + "/v1/models"
            async with session.get(plain) as resp:  # not an LLM route: nothing started
                await resp.read()
            started_by_plain = getattr(prices, "warming", None) is not None
            url = fake.url + "/v1/chat/completions"
            async with session.post(url, json={"model": "gpt-4o", "messages": []}) as resp:
                await resp.read()
        keys = sw.costs()["keys"]
        priced = [str(k["cost_usd"]) for k in keys.values() if k["calls"]]
    print(json.dumps({"importers": importers, "plain": started_by_plain, "priced": priced}))

asyncio.run(main())
"""


def test_the_first_llm_route_imports_the_prices_in_a_thread_of_its_own() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "0.5"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["importers"] == ["seawall.prices"]  # before: ["MainThread"], on the loop
    assert seen["plain"] is False
    assert len(seen["priced"]) == 1
    assert float(seen["priced"][0]) > 0
