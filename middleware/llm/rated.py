"""A call's price from genai-prices' database, as ``genai_prices.calc_price`` gives it, faster.

``calc_price`` resolves the model (genai-prices caches the names it found),
picks the price in force, then rebuilds the price's units, checks them and
splits the usage into them on every call: ~0.12 ms of the event loop per
priced answer. Here the plan of a price (which of the four token prices it
has, in its order) is worked out once per price, and a call made of the four
counts seawall reads (input, output, cache reads, cache writes) is priced
with the same ``Decimal`` operations in the same order, so the result is the
same value with the same digits. Prices with anything else (tiers, per-request
or per-search prices, other token kinds) and surprises go to ``calc_price``'s
own path. A name the database does not know is remembered as unknown (its
lookup scans every model of the provider, each time).

Called with genai-prices imported (``seawall.llm.prices.price``), in seawall's
decimal context.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

__all__ = ["LOOKUPS_MAX", "PLAN_MAX", "UNKNOWN_MAX", "genai_usage", "total_price"]

#: The counts of a call seawall reads, by the usage key of genai-prices' units.
_COUNTS = {
    "input_tokens": "input",
    "output_tokens": "output",
    "cache_read_tokens": "cache_read",
    "cache_write_tokens": "cache_write",
}

#: Most price plans remembered (one per price of a model seen; the database has a few
#: thousand); past it they are forgotten all at once and worked out again.
PLAN_MAX = 512

#: Most unknown model names remembered (names come from upstream answers).
UNKNOWN_MAX = 1024

#: Most names genai-prices' own lookup cache keeps before seawall empties it.
LOOKUPS_MAX = 4096

#: A rate: its base, and its tiers' (input tokens above which it applies, rate), in order.
Rate = tuple[Decimal, tuple[tuple[int, Decimal], ...]]

#: A price's terms in its order: (the count it prices, ``None`` for a unit the call
#: has none of; its rate; the units its rate is for).
Plan = tuple[tuple[str | None, Rate, int], ...]

#: ``id(price)`` -> (the price, its plan, or ``None`` when ``calc_price`` must price
#: it). The price is kept so that its id is not reused.
_plans: dict[int, tuple[Any, Plan | None]] = {}

#: (provider, model name) pairs the current database does not know, and that database.
_unknown: set[tuple[str, str]] = set()
_unknown_in: list[Any] = [None]


def _plan(model_price: Any) -> Plan | None:
    """The terms ``calc_price`` adds up for this price, in its order, when every term is
    a rate (flat or tiered by input tokens) of one of the four counts, or of a unit the
    call cannot have (such as web searches: priced at 0, which can change the total's
    digits, not its value); ``None`` for any other price (per-request prices, a unit
    whose count would include one of the four), which ``calc_price`` then prices."""
    from genai_prices.decompose import is_descendant_or_self
    from genai_prices.types import ModelPrice, TieredPrices, _validate_model_price_value
    from genai_prices.units import _get_registry
    from genai_prices.validation import validate_priced_units

    if type(model_price) is not ModelPrice:
        return None
    registry = _get_registry()
    terms = []
    for key, value in model_price.__dict__.items():
        if key.startswith("_") or value is None:
            continue
        value = _validate_model_price_value(key, value)  # ValueError: no plan
        if isinstance(value, TieredPrices):
            rate: Rate = (value.base, tuple((tier.start, tier.price) for tier in value.tiers))
        else:
            rate = (value, ())
        terms.append((registry.unit_for_price_key(key), rate))  # KeyError: no plan
    validate_priced_units(tuple(unit for unit, _ in terms), registry)
    ours = [registry.units[name] for name in _COUNTS]
    plan = []
    for unit, rate in terms:
        count = _COUNTS.get(unit.usage_key)
        if count is None and (
            unit.usage_key == "requests" or any(is_descendant_or_self(unit, o) for o in ours)
        ):
            return None
        plan.append((count, rate, int(unit.per)))
    return tuple(plan)


def _planned(model_price: Any) -> Plan | None:
    found = _plans.get(id(model_price))
    if found is not None and found[0] is model_price:
        return found[1]
    try:
        plan = _plan(model_price)
    except Exception:  # a price genai-prices itself refuses, or internals it changed
        plan = None
    if len(_plans) >= PLAN_MAX:
        _plans.clear()
    _plans[id(model_price)] = (model_price, plan)
    return plan


def _by_plan(plan: Plan, counts: dict[str, int]) -> Decimal | None:
    """``calc_price``'s total for ``counts``: each priced count less the priced counts
    within it (cache reads and writes are input tokens), times its rate, over its unit,
    added up from ``Decimal(0)`` in the price's order; ``None`` where it would refuse."""
    priced = {count for count, _, _ in plan}
    leaves = dict(counts)
    leaves["input"] = counts["input"] - sum(
        counts[inner] for inner in ("cache_read", "cache_write") if inner in priced
    )
    if leaves["input"] < 0:
        return None  # calc_price raises its own error for it
    total = Decimal(0)
    for count, (base, tiers), per in plan:
        rate = base
        for start, tier_rate in reversed(tiers):  # the highest tier the input is above
            if counts["input"] > start:
                rate = tier_rate
                break
        total += rate * Decimal(0 if count is None else leaves[count]) / per
    return total


def total_price(snapshot: Any, model: str, provider_id: str, counts: dict[str, int]) -> Decimal:
    """The price of a call as ``calc_price(Usage(...), model, provider_id=provider_id)``
    gives it, for a call of ``counts`` (``input``, ``output``, ``cache_read``,
    ``cache_write``; the cache counts given only when not 0, as ``prices.price`` did).
    Raises as it does (``LookupError`` for an unknown model)."""
    if _unknown_in[0] is not snapshot:  # a new database (genai-prices' auto-update)
        _unknown.clear()
        _unknown_in[0] = snapshot
    name = (provider_id, model)
    if name in _unknown:
        msg = "a model the price database does not know"
        raise LookupError(msg)
    try:
        provider, info = snapshot.find_provider_model(model, None, provider_id, None)
        found_names = getattr(snapshot, "_lookup_cache", None)
        if type(found_names) is dict and len(found_names) > LOOKUPS_MAX:
            # genai-prices keeps every name it matched, unbounded: an upstream naming
            # its model afresh per answer ("claude-3-5-sonnet-<id>" matches) grew it.
            found_names.clear()
    except LookupError as exc:
        if type(exc) is not LookupError:  # an internal KeyError is no unknown model
            raise
        if len(_unknown) >= UNKNOWN_MAX:
            _unknown.clear()
        _unknown.add(name)
        raise
    now = datetime.now(tz=UTC)
    plan = _planned(info.get_prices(now)) if provider.id in ("openai", "anthropic") else None
    if plan is not None:
        total = _by_plan(plan, counts)
        if total is not None:
            return total
    usage = genai_usage(counts)
    found: Decimal = info.calc_price(usage, provider, genai_request_timestamp=now).total_price
    return found


def genai_usage(counts: dict[str, int]) -> Any:
    """genai-prices' ``Usage`` of ``counts``, the cache counts left out when 0."""
    from genai_prices import Usage as PriceUsage

    return PriceUsage(
        input_tokens=counts["input"],
        output_tokens=counts["output"],
        cache_read_tokens=counts["cache_read"] or None,
        cache_write_tokens=counts["cache_write"] or None,
    )
