"""Fleet-wide sums: the retry budget's counts and the cost totals of every process.

``FleetBudget`` is a ``RetryBudget`` that also counts the requests and
retries the other processes reported for the key (refreshed by the store's
task), so N processes together stay within the ratio; the floor
(``min_retries_per_second``) is shared among them. Without Redis it is the
in-process budget.

Costs: each process publishes its own ``sw.costs()`` as JSON (with
``Decimal`` as strings, exact); ``merge`` adds reports up per key and model
(``unpriced_calls``, calls whose cost is unknown, whatever the reason: a model
without a price or a stream left before its usage came, add up like the rest).
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from seawall.budget import RetryBudget
from seawall.fleet.costs_script import COSTS, COSTS_LAPSE
from seawall.policy import BudgetPolicy
from seawall.reports import MONEY, AvoidedCalls, CostReport, KeyCosts, ModelCosts

__all__ = [
    "COSTS",
    "COSTS_EVERY",
    "COSTS_LAPSE",
    "COSTS_TTL",
    "USD_MAX",
    "CostExchange",
    "FleetBudget",
    "dumps",
    "loads",
    "merge",
]

#: Seconds between two exchanges of cost reports.
COSTS_EVERY = 1.0

#: Seconds a process's cost report stays in Redis after it last published it.
COSTS_TTL = 86_400.0

#: Milliseconds before its last read from which a process asks for the reports written.
SINCE_SLACK = 1000

#: Seconds between two exchanges that list the other live processes (their names), by
#: which the reports of processes gone (expired, or lost by Redis) are forgotten here.
#: Listing 3,000 names cost more Redis time than the rest of a steady exchange, 30 times.
NAMES_EVERY = 60.0

#: Most other processes' reports one exchange sends (the oldest first; the rest at the next
#: rounds): a member that starts among a day of dead workers' reports parses them in
#: slices (about 10 ms of its event loop each), not all at once.
COSTS_SLICE = 100


class FleetBudget(RetryBudget):
    """A retry budget over the whole fleet's requests and retries of one key."""

    # No ``__dict__``, as ``RetryBudget``: one per key. Without it each key paid a dict
    # (344 B on Python 3.13, where a fleet's key went past DESIGN's 2 KiB).
    __slots__ = ("members", "others")

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


#: Most US dollars one process's report may state for a key or model: far above any
#: real bill. A report stating more, or a cost that is negative or not a finite
#: number, or a count that is not a whole number >= 0, is left out.
USD_MAX = Decimal(10) ** 12


def _usd(value: Any) -> Decimal:
    """A cost from another process's report: a string of a finite amount, 0 to USD_MAX."""
    if not isinstance(value, str):
        msg = "a cost in a fleet report is not a string"
        raise TypeError(msg)
    amount = Decimal(value)  # a malformed one raises InvalidOperation, an ArithmeticError
    if not amount.is_finite() or not 0 <= amount <= USD_MAX:
        msg = "a cost in a fleet report is not a finite amount >= 0"
        raise ValueError(msg)
    return amount


def _count(value: Any) -> int:
    """A count from another process's report: a whole number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = "a count in a fleet report is not a whole number >= 0"
        raise ValueError(msg)
    return value


def _seconds(value: Any) -> float:
    """Seconds from another process's report: a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = "seconds in a fleet report are not a number"
        raise TypeError(msg)
    if not 0 <= value < float("inf"):  # NaN fails too
        msg = "seconds in a fleet report are not a finite number >= 0"
        raise ValueError(msg)
    return float(value)


def _model_costs(m: dict[str, Any]) -> ModelCosts:
    return ModelCosts(
        calls=_count(m["calls"]),
        input_tokens=_count(m["input_tokens"]),
        output_tokens=_count(m["output_tokens"]),
        cache_read_tokens=_count(m["cache_read_tokens"]),
        cache_write_tokens=_count(m["cache_write_tokens"]),
        cost_usd=_usd(m["cost_usd"]),
        unpriced_calls=_count(m["unpriced_calls"]),
    )


def _key_costs(data: dict[str, Any]) -> KeyCosts:
    avoided = data["avoided_calls"]
    return KeyCosts(
        models={_name(name): _model_costs(m) for name, m in data["models"].items()},
        cost_usd=_usd(data["cost_usd"]),
        calls=_count(data["calls"]),
        failed_attempts=_count(data["failed_attempts"]),
        waited_seconds=_seconds(data["waited_seconds"]),
        avoided_calls=AvoidedCalls(
            breaker=_count(avoided["breaker"]), cooldown=_count(avoided["cooldown"])
        ),
    )


def _name(value: Any) -> str:
    if not isinstance(value, str):
        msg = "a key or model in a fleet report is not a string"
        raise TypeError(msg)
    return value


def loads(text: str) -> CostReport:
    """The inverse of ``dumps``; raises ``ValueError``, ``TypeError``, ``KeyError``,
    ``AttributeError`` or an ``ArithmeticError`` for a report that is malformed or
    states what no process could count (a cost that is NaN, infinite, negative or
    above ``USD_MAX``; a count that is not a whole number >= 0), so that one
    process's bad report cannot poison or break the fleet's totals."""
    data = json.loads(text)
    return CostReport(
        cost_usd=_usd(data["cost_usd"]),
        calls=_count(data["calls"]),
        input_tokens=_count(data["input_tokens"]),
        output_tokens=_count(data["output_tokens"]),
        by_key={_name(key): _key_costs(k) for key, k in data["keys"].items()},
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
    with decimal.localcontext(MONEY):  # not the caller's: see seawall.reports.MONEY
        return _merge(reports)


def _merge(reports: Iterable[CostReport]) -> CostReport:
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


class CostExchange:
    """The fleet's cost reports: every ``COSTS_EVERY`` s this process publishes its own
    (when it changed, or when Redis lost it) and reads the others' that changed since its
    last read (the ``COSTS`` script: the hash ``key`` and its index of write times, so a
    round reads the changed reports, not every one); the rest it keeps as parsed."""

    def __init__(self, key: str, node: str) -> None:
        self.key = key
        #: The index of ``key``: its nodes, scored by when each report was written.
        self.index = f"{key}:w"
        self.node = node
        #: The other processes' cost reports, as last read, by node.
        self.by_node: dict[str, CostReport] = {}
        self._at = float("-inf")
        self._sent = ""
        #: Where the next read starts: reports written after this (Redis's clock, ms), or
        #: then by a node named after ``_after``, are sent.
        self._since = 0
        self._after = ""
        #: Redis's clock (ms) at the last reply: one that goes back is a clock gone back.
        self._now = 0
        #: When the last exchange that listed the live processes was called, and when the
        #: one in flight was if it lists them (``None``: it does not; the first one does).
        self._listed_at = float("-inf")
        self._listing: float | None = float("-inf")

    @property
    def fleet(self) -> list[CostReport]:
        """The other processes' cost reports, as last read."""
        return list(self.by_node.values())

    def due(self) -> None:
        """Exchange at the next round."""
        self._at = float("-inf")

    def call(
        self, now: float, source: Callable[[], CostReport] | None
    ) -> tuple[str, list[str], list[Any]] | None:
        """This round's ``COSTS`` call, or ``None`` (not due, or no source)."""
        if source is None or now - self._at < COSTS_EVERY:
            return None
        self._at = now
        text = dumps(source())
        mine, self._sent = ("" if text == self._sent else text), text
        ttl = max(1, round(COSTS_TTL * 1000))
        listing = now - self._listed_at >= NAMES_EVERY
        self._listing = now if listing else None
        args = [self.node, mine, ttl, self._since, COSTS_SLICE, self._after, COSTS_LAPSE]
        args.append("1" if listing else "0")
        return ("COSTS", [self.key, self.index], args)

    def read(self, reply: object) -> bool:
        """Keep the reports that read; ``False`` when any did not (or the reply is an error)."""
        try:
            if not isinstance(reply, list):
                return False
            now, missing, since = (int(x) for x in reply[:3])
            after, count = _text(reply[3]), int(reply[4])
            names = {_text(x) for x in reply[5 : 5 + count]}
            changed = [_text(x) for x in reply[5 + count :]]
        except (TypeError, ValueError, AttributeError):  # (a bad name: UnicodeDecodeError)
            return False
        listed, self._listing = self._listing, None
        if missing:
            self._sent = ""  # Redis lost this process's report: sent in full next time
            self._listed_at = float("-inf")  # (and maybe the others': listed next time)
        good = len(changed) % 2 == 0
        for node, text in zip(changed[::2], changed[1::2], strict=False):
            try:
                self.by_node[node] = loads(text)
            except (ValueError, TypeError, KeyError, ArithmeticError, AttributeError):
                self.by_node.pop(node, None)
                good = False  # one process's report left out; the others count
        if listed is not None:  # (no names asked for: none pruned)
            self.by_node = {node: r for node, r in self.by_node.items() if node in names}
            if not missing:
                self._listed_at = listed
        # Reports written since this read (or the next slice) come next time, from a
        # second early (the same millisecond); a clock gone back (a failover) reads all.
        # A slice is told by the node it ended on, not by `since < now` alone: its last
        # report may have been written in the reply's own millisecond, or later (a clock
        # gone back), and a read from a second before it sent that slice again, each
        # round, and never the rest. So is a clock gone back: Redis's clock against its
        # own last reading, not against `since` (a slice's since may be ahead of now).
        went_back, self._now = now < self._now, now
        if went_back:
            self._since, self._after = 0, ""
            self._listed_at = float("-inf")
        elif after or since < now:  # a slice: the next, from after its last report, next round
            self._since, self._after = since, after
            self.due()
        else:
            self._since, self._after = max(0, now - SINCE_SLACK), ""
        return good


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
