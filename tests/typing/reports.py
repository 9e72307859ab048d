"""Type-checked, never run: the fields of ``sw.health()`` and ``sw.costs()`` are typed.

``assert_type`` fails under ``mypy --strict`` unless the expression has
exactly that type: a field typed ``Any`` (as in the old ``dict[str, Any]``
reports) fails it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import assert_type

import seawall
from seawall.reports import AvoidedCalls, CostReport, HealthReport, KeyCosts, KeyHealth


def read(sw: seawall.Seawall) -> None:
    health = sw.health()
    assert_type(health, HealthReport)
    assert_type(health.status, str)
    assert_type(health.success_rate, float | None)
    assert_type(health.by_key, dict[str, KeyHealth])
    for key, detail in health.by_key.items():
        assert_type(detail.state, str)
        assert_type(detail.consecutive_failures, int)
        assert_type(detail.last_failure, float | None)
        print(key, detail.p95_latency)
    legacy: Mapping[str, object] = health  # the documented dict access still types
    print(legacy["status"], json.dumps(health.to_dict()))

    costs = sw.costs()
    assert_type(costs, CostReport)
    assert_type(costs.cost_usd, Decimal)
    for per_key in costs.by_key.values():
        assert_type(per_key, KeyCosts)
        assert_type(per_key.avoided_calls, AvoidedCalls)
        for model, usage in per_key.models.items():
            assert_type(usage.cost_usd, Decimal)
            assert_type(usage.input_tokens, int)
            print(model, usage.cost_usd.quantize(Decimal("0.0001")))
    print(json.dumps(costs.to_dict()))
