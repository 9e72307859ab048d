"""Pricing a call from a plan worked out once per price gives what genai-prices gives.

``seawall.llm.rated`` prices the four counts seawall reads with the same
``Decimal`` operations as ``genai_prices.calc_price``, in the same order: the
same value with the same digits, for every price of the database it plans.
"""

from __future__ import annotations

import decimal
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seawall import costs, reports
from seawall.llm import prices, rated

genai_prices = pytest.importorskip("genai_prices")
from genai_prices import data_snapshot  # noqa: E402
from genai_prices.types import ModelPrice  # noqa: E402


def _all_prices() -> list[Any]:
    """Every price of the database: standing, conditional and request variants."""
    found = []
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            prices = model.prices if isinstance(model.prices, list) else [model.prices]
            for price in prices:
                found.append(price if isinstance(price, ModelPrice) else price.prices)
            for variant in model.price_variants or ():
                found.append(variant.prices)
    return found


def _genai_usage(input_tokens: int, output: int, read: int, write: int) -> Any:
    """genai-prices' ``Usage`` of a call, cache counts left out when 0 (as seawall gives them)."""
    return genai_prices.Usage(
        input_tokens=input_tokens,
        output_tokens=output,
        cache_read_tokens=read or None,
        cache_write_tokens=write or None,
    )


def _chat(model: str, provider: str, input_tokens: int, output: int) -> costs.Usage:
    """seawall's ``Usage`` of a chat call with no cache counts."""
    return costs.Usage(
        model=model,
        provider=provider,
        flavor="chat",
        input_tokens=input_tokens,
        output_tokens=output,
    )


_PRICES = _all_prices()
_PLANNED = [price for price in _PRICES if rated._plan(price) is not None]
_COUNT = st.integers(0, costs.MAX_TOKENS)


def test_most_prices_of_the_database_are_planned() -> None:
    """Token prices, flat or tiered, of any provider are planned (else no speed-up)."""
    assert len(_PLANNED) > len(_PRICES) // 2


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, len(_PLANNED) - 1),
    input_tokens=_COUNT,
    output=_COUNT,
    read=_COUNT,
    write=_COUNT,
)
def test_a_planned_price_gives_genai_prices_total_to_the_digit(
    index: int, input_tokens: int, output: int, read: int, write: int
) -> None:
    """Any counts, any planned price: the same Decimal, digits included, or both refuse."""
    price = _PLANNED[index]
    plan = rated._plan(price)
    assert plan is not None
    counts = {"input": input_tokens, "output": output, "cache_read": read, "cache_write": write}
    usage = _genai_usage(input_tokens, output, read, write)
    with decimal.localcontext(reports.MONEY):
        try:
            expected = price.calc_price(usage)["total_price"]
        except ValueError:
            expected = None
        got = rated._by_plan(plan, counts)
    assert str(got) == str(expected)


_MODELS = sorted(
    (provider.id, model.id)
    for provider in data_snapshot.get_snapshot().providers
    if provider.id in ("openai", "anthropic")
    for model in provider.models
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=st.sampled_from(_MODELS),
    suffix=st.sampled_from(["", "-2025-01-01", "-20250929", "-nobody-sells-this"]),
    input_tokens=st.integers(0, 400_000),
    output=st.integers(0, 100_000),
    read=st.integers(0, 200_000),
    write=st.integers(0, 200_000),
)
def test_price_agrees_with_calc_price_for_every_model(
    model: tuple[str, str], suffix: str, input_tokens: int, output: int, read: int, write: int
) -> None:
    """``seawall.costs.price`` is genai-prices' ``calc_price`` total, or ``None`` where
    it raises, for the providers' models and names it does not know."""
    provider, name = model
    name += suffix
    usage = costs.Usage(
        model=name,
        provider=provider,
        flavor="chat",
        input_tokens=input_tokens,
        output_tokens=output,
        cache_read_tokens=read,
        cache_write_tokens=write,
    )
    tokens = _genai_usage(input_tokens, output, read, write)
    with decimal.localcontext(reports.MONEY):
        try:
            expected = genai_prices.calc_price(tokens, name, provider_id=provider).total_price
        except Exception:
            expected = None
    for _ in range(2):  # planned the first time, from the plan the second
        got = costs.price(usage)
        assert str(got) == str(expected)


def test_an_answer_with_a_part_of_a_count_but_not_the_count_is_not_priced() -> None:
    """An Anthropic answer naming 5-minute cache writes but no cache writes is not priced
    (genai-prices refuses to guess the count); reading it raised ValueError, which turned
    the successful answer into an error for the caller."""
    usage = {"input_tokens": 10, "output_tokens": 5}
    usage["cache_creation"] = {"ephemeral_5m_input_tokens": 3}  # type: ignore[assignment]
    body = {"model": "claude-sonnet-4-5", "type": "message", "usage": usage}
    assert costs.usage_from_json(json.dumps(body).encode()) is None
    usage["cache_creation_input_tokens"] = 3
    found = costs.usage_from_json(json.dumps(body).encode())
    assert found is not None
    assert found.cache_write_tokens == 3


def test_a_model_the_database_does_not_know_is_remembered_within_bounds() -> None:
    """Unknown names are looked up once each and never held past ``UNKNOWN_MAX``."""
    for number in range(rated.UNKNOWN_MAX + 10):
        usage = _chat(f"nobody-sells-{number}", "openai", 1, 1)
        assert costs.price(usage) is None
    assert len(rated._unknown) <= rated.UNKNOWN_MAX
    assert costs.price(usage) is None


@pytest.mark.parametrize("moved", [AttributeError, TypeError, KeyError])
def test_a_genai_prices_that_moved_its_internals_still_prices_through_calc_price(
    monkeypatch: pytest.MonkeyPatch, moved: type[Exception]
) -> None:
    """``rated.total_price`` reads genai-prices' internals (``find_provider_model``, a
    price's calculation): a release that renamed them would raise something other than
    ``LookupError``. Pricing then goes through the public ``calc_price``, not unpriced."""
    usage = costs.Usage(
        model="gpt-4o",
        provider="openai",
        flavor="chat",
        input_tokens=1000,
        output_tokens=200,
        cache_read_tokens=100,
        cache_write_tokens=0,
    )
    expected = costs.price(usage)
    assert expected is not None

    def renamed(*_args: Any, **_kwargs: Any) -> Any:
        raise moved("find_provider_model")

    # The quick path as a release that moved them would leave it (calc_price itself
    # uses them too, so they cannot be taken from genai-prices here).
    monkeypatch.setattr(prices, "total_price", renamed)
    assert costs.price(usage) == expected
    unknown = _chat("no-such-model", "openai", 1, 1)
    assert costs.price(unknown) is None  # calc_price's LookupError: unpriced, as before


def test_names_matched_afresh_per_answer_do_not_grow_genai_prices_cache() -> None:
    """genai-prices remembers every name it matched; "claude-3-5-sonnet-<anything>"
    matches. An upstream naming its model afresh per answer grew that cache by one
    entry an answer, for good: seawall empties it past ``LOOKUPS_MAX``."""
    cache = data_snapshot.get_snapshot()._lookup_cache
    reference = _chat("claude-3-5-sonnet", "anthropic", 10, 10)
    expected = costs.price(reference)
    assert expected is not None
    for number in range(rated.LOOKUPS_MAX + 50):
        usage = _chat(f"claude-3-5-sonnet-{number:08x}", "anthropic", 10, 10)
        assert costs.price(usage) == expected  # priced as the model it matches
    assert len(cache) <= rated.LOOKUPS_MAX + 1
