"""``sw.health()``, ``sw.costs()``: typed reports, still read as dicts; JSON via ``to_dict()``."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

import seawall
from seawall.fake_llm import FakeProvider
from seawall.reports import CostReport, HealthReport, KeyCosts, KeyHealth, ModelCosts

from ._helpers import policy


async def test_health_is_typed_and_reads_as_the_documented_dict() -> None:
    sw = seawall.Seawall(policy(max_attempts=2), entrypoints=False)

    async def ok() -> str:
        return "ok"

    assert await sw.call(ok, key="svc") == "ok"
    report = sw.health()
    assert isinstance(report, HealthReport)
    key = "svc"
    detail = report.by_key[key]
    assert isinstance(detail, KeyHealth)
    # Attribute and item access agree, nested too.
    assert report["status"] == report.status == "healthy"
    assert report["keys"][key]["state"] == detail.state == "closed"
    assert report["requests"] == report.requests == 1
    assert list(report)[:3] == ["status", "uptime", "breakers"]
    assert "keys" in report
    assert "by_key" not in report
    assert "to_dict" not in report
    with pytest.raises(KeyError):
        report["no_such_field"]
    # A plain-dict copy compares equal, and JSON round-trips to the same values.
    plain = report.to_dict()
    assert type(plain) is dict
    assert type(plain["keys"][key]) is dict
    assert report == plain == json.loads(json.dumps(plain))
    assert dict(detail) == plain["keys"][key]


async def test_costs_are_typed_and_to_dict_is_json_with_exact_decimals() -> None:
    sw = seawall.Seawall(routes={"127.0.0.1": seawall.Policy.for_llm()}, entrypoints=False)
    async with (
        FakeProvider() as fake,
        sw.session() as session,
        session.post(fake.url + "/v1/chat/completions", json={"model": "gpt-4o"}) as resp,
    ):
        await resp.read()
    report = sw.costs()
    assert isinstance(report, CostReport)
    (key,) = report.by_key
    costs = report.by_key[key]
    assert isinstance(costs, KeyCosts)
    model = costs.models["gpt-4o"]
    assert isinstance(model, ModelCosts)
    assert isinstance(model.cost_usd, Decimal)
    assert model.cost_usd > 0
    assert report["keys"][key]["models"]["gpt-4o"]["cost_usd"] == model.cost_usd
    assert report.cost_usd == costs.cost_usd == model.cost_usd
    assert costs.avoided_calls["breaker"] == costs.avoided_calls.breaker == 0
    with pytest.raises(TypeError):
        json.dumps(dict(report))  # Decimal: why to_dict() exists
    data = json.loads(json.dumps(report.to_dict()))
    entry = data["keys"][key]["models"]["gpt-4o"]
    assert entry["cost_usd"] == str(model.cost_usd)
    assert Decimal(data["cost_usd"]) == report.cost_usd  # exact, no float rounding
    assert entry["calls"] == 1
    assert data["calls"] == 1


def test_reports_are_read_only() -> None:
    report = seawall.Seawall(entrypoints=False).health()
    with pytest.raises(TypeError):
        report["status"] = "healthy"  # type: ignore[index]
    with pytest.raises(AttributeError):
        report.status = "healthy"  # type: ignore[misc]
