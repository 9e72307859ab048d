"""One process's cost report in Redis cannot poison or break the fleet's totals.

Found by the audit of LLM usage and costs (docs/architecture.md): a report
whose cost was ``"NaN"`` made every process's ``sw.costs(scope="fleet")``
NaN, and one whose count was a string made it raise ``TypeError``.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from seawall.costs import Usage
from seawall.fleet.totals import USD_MAX, CostExchange, dumps, loads, merge
from tests._redis import RedisServer, server_fixture
from tests.test_fleet import Member, exchange_costs

server = server_fixture()

_KEY = "https://api.openai.com"


def _report(cost: Any = "0.5", calls: Any = 1, waited: Any = 0.0) -> dict[str, Any]:
    model = {
        "calls": calls,
        "input_tokens": 10,
        "output_tokens": 2,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cost_usd": cost,
        "unpriced_calls": 0,
    }
    key = {
        "models": {"gpt-4o": model},
        "cost_usd": cost,
        "calls": calls,
        "failed_attempts": 0,
        "waited_seconds": waited,
        "avoided_calls": {"breaker": 0, "cooldown": 0},
    }
    return {
        "cost_usd": cost,
        "calls": calls,
        "input_tokens": 10,
        "output_tokens": 2,
        "keys": {_KEY: key},
    }


@pytest.mark.parametrize(
    "poison",
    [
        {"cost": "NaN"},
        {"cost": "-Infinity"},
        {"cost": "sNaN"},
        {"cost": "-5"},
        {"cost": "1E+999999"},
        {"cost": 0.5},
        {"calls": "1"},
        {"calls": -3},
        {"calls": True},
        {"waited": None},
    ],
    ids=repr,
)
async def test_a_poisoned_cost_report_is_left_out(
    server: RedisServer, poison: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A report in Redis stating a NaN, infinite, negative or absurd cost, or a count that
    is not a whole number, is left out (and logged): the fleet's totals stay those of
    the other processes."""
    prefix = f"c{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(server.url)
    # As the COSTS script stores a report: its expiry (Redis's ms), a bar, the report.
    expiry = round((time.time() + 3600) * 1000)
    text = f"{expiry}|{json.dumps(_report(**poison))}"
    await client.hset(f"{prefix}:{{costs}}", "someone", text)
    caplog.set_level(logging.WARNING, logger="seawall")
    made = [Member(server.url, prefix) for _ in range(2)]
    try:
        for m in made:
            m.sw.cost_tracker.record(_KEY, Usage("gpt-4o-mini", "openai", "chat", 1000, 10))
        await exchange_costs(made)
        fleet = made[0].sw.costs(scope="fleet")
        mine = made[0].sw.costs()
        assert fleet.cost_usd.is_finite()
        assert fleet.cost_usd == 2 * mine.cost_usd
        assert fleet.calls == 2
        assert fleet.by_key[_KEY].models["gpt-4o-mini"].calls == 2
        texts = [r.getMessage() for r in caplog.records]
        assert any("not one seawall wrote" in t for t in texts), texts
    finally:
        await client.aclose()
        for m in made:
            await m.sw.aclose()


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["NaN", "Infinity", "-0", "1E+999999", "0.5", "12", "x"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(
    field=st.sampled_from(["cost", "calls", "waited"]),
    value=_JSON,
)
def test_reports_that_read_always_add_up(field: str, value: Any) -> None:
    """Whatever one field of a report holds, it either does not read, or it reads as
    finite amounts and whole counts that merge without raising."""
    text = json.dumps(_report(**{field: value}))
    exchange = CostExchange("k", "me")
    good = dumps(loads(json.dumps(_report())))
    exchange.read([10_000, 0, 10_000, b"", 2, b"a", b"b", b"a", text, b"b", good])
    assert 1 <= len(exchange.fleet) <= 2
    total = merge(exchange.fleet * 3)
    assert total.cost_usd.is_finite()
    assert Decimal(0) <= total.cost_usd <= 6 * USD_MAX
    for costs in total.by_key.values():
        assert isinstance(costs.calls, int)
        assert math.isfinite(costs.waited_seconds)


_REPLY_ITEM = (
    st.integers(-(2**64), 2**64)
    | st.binary(max_size=8)
    | st.sampled_from([b"a", b"b", b"me", b"\xff", json.dumps(_report()).encode()])
    | st.lists(st.integers(), max_size=2)
)


@given(reply=st.lists(_REPLY_ITEM, max_size=10) | _REPLY_ITEM)
def test_any_costs_reply_is_read_or_refused_without_raising(reply: Any) -> None:
    """A ``COSTS`` reply of any shape (another version's, a hostile value's) never
    raises; a reply that reads keeps parsed reports of nodes it names as live."""
    exchange = CostExchange("k", "me")
    exchange.by_node["gone"] = loads(json.dumps(_report()))
    exchange.read(reply)
    assert all(isinstance(node, str) for node in exchange.by_node)
    if set(exchange.by_node) != {"gone"}:  # (a reply refused as a whole changes nothing)
        names = set(reply[5:]) if isinstance(reply, list) else set()
        assert all(node.encode() in names for node in exchange.by_node)
