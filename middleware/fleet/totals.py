"""Fleet-wide sums: the retry budget's counts and the cost totals of every process.

``FleetBudget`` is a ``RetryBudget`` that also counts the requests and
retries the other processes reported for the key (refreshed by the store's
task), so N processes together stay within the ratio; the floor
(``min_retries_per_second``) is shared among them. Without Redis it is the
in-process budget.

Costs: each process publishes its own ``sw.costs()`` as JSON (with
``Decimal`` as strings, exact); ``merge`` adds reports up per key and model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from seawall.budget import RetryBudget
from seawall.policy import BudgetPolicy
from seawall.reports import AvoidedCalls, CostReport, KeyCosts, ModelCosts

__all__ = ["FleetBudget", "dumps", "loads", "merge"]


class FleetBudget(RetryBudget):
    """A retry budget over the whole fleet's requests and retries of one key."""

    def __init__(self, policy: BudgetPolicy, clock: Callable[[], float]) -> None:
        super().__init__(policy, clock)
        #: Requests and retries of the other processes in their windows.
        self.others = (0, 0)
        #: Processes that share the floor (this one included).
        self.members = 1

    def balance(self) -> float:
        own = super().balance()
        requests, retries = self.others
        if not requests and not retries and self.members <= 1:
            return own
        policy = self.policy
        floor = policy.min_retries_per_second * policy.window
        earned = requests * policy.ratio if policy.enabled else 0.0
        return own - floor + floor / self.members + earned - retries


def dumps(report: CostReport) -> str:
    """One process's cost report as JSON (``Decimal`` as strings)."""
    return json.dumps(report.to_dict())


def _key_costs(data: dict[str, Any]) -> KeyCosts:
    return KeyCosts(
        models={
            name: ModelCosts(**{**m, "cost_usd": Decimal(m["cost_usd"])})
            for name, m in data["models"].items()
        },
        cost_usd=Decimal(data["cost_usd"]),
        calls=data["calls"],
        failed_attempts=data["failed_attempts"],
        waited_seconds=data["waited_seconds"],
        avoided_calls=AvoidedCalls(**data["avoided_calls"]),
    )


def loads(text: str) -> CostReport:
    """The inverse of ``dumps``."""
    data = json.loads(text)
    return CostReport(
        cost_usd=Decimal(data["cost_usd"]),
        calls=data["calls"],
        input_tokens=data["input_tokens"],
        output_tokens=data["output_tokens"],
        by_key={key: _key_costs(k) for key, k in data["keys"].items()},
    )


def _add_models(into: dict[str, ModelCosts], models: dict[str, ModelCosts]) -> None:
    for name, m in models.items():
        seen = into.get(name)
        if seen is None:
            into[name] = m
            continue
        into[name] = ModelCosts(
            calls=seen.calls + m.calls,
            input_tokens=seen.input_tokens + m.input_tokens,
            output_tokens=seen.output_tokens + m.output_tokens,
            cache_read_tokens=seen.cache_read_tokens + m.cache_read_tokens,
            cache_write_tokens=seen.cache_write_tokens + m.cache_write_tokens,
            cost_usd=seen.cost_usd + m.cost_usd,
            unpriced_calls=seen.unpriced_calls + m.unpriced_calls,
        )


def merge(reports: Iterable[CostReport]) -> CostReport:
    """Several processes' reports added up per key and model."""
    models: dict[str, dict[str, ModelCosts]] = {}
    rest: dict[str, list[KeyCosts]] = {}
    for report in reports:
        for key, costs in report.by_key.items():
            _add_models(models.setdefault(key, {}), costs.models)
            rest.setdefault(key, []).append(costs)
    keys = {
        key: KeyCosts(
            models=models[key],
            cost_usd=sum((k.cost_usd for k in parts), Decimal(0)),
            calls=sum(k.calls for k in parts),
            failed_attempts=sum(k.failed_attempts for k in parts),
            waited_seconds=sum(k.waited_seconds for k in parts),
            avoided_calls=AvoidedCalls(
                breaker=sum(k.avoided_calls.breaker for k in parts),
                cooldown=sum(k.avoided_calls.cooldown for k in parts),
            ),
        )
        for key, parts in rest.items()
    }
    return CostReport.of(keys)
