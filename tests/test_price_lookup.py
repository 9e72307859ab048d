"""``seawall.costs.model_price(model)``: per-token prices, from genai-prices or the table."""

from __future__ import annotations

import logging
import sys
from decimal import Decimal

import pytest

import seawall.costs
from seawall.costs import ModelPrice, Usage, model_price, price
from seawall.llm.prices import BUILT_IN

_MTOK = Decimal(1_000_000)


@pytest.fixture
def without_genai_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the ``llm`` extra were not installed: importing genai_prices fails."""
    monkeypatch.setitem(sys.modules, "genai_prices", None)


def test_price_of_a_known_model_from_genai_prices() -> None:
    """gpt-4o's tokens, per token, exact; dated names find their model."""
    found = seawall.costs.model_price("gpt-4o-2024-08-06")
    assert isinstance(found, ModelPrice)
    assert found.source == "genai-prices"
    assert found.provider == "openai"
    assert found.input_per_token * _MTOK == Decimal("2.50")
    assert found.output_per_token * _MTOK == Decimal("10.00")
    assert found.cache_read_per_token * _MTOK == Decimal("1.25")


def test_long_prompt_tiers_do_not_leak_into_the_base_price() -> None:
    """claude-sonnet-4-5 costs more past 200k prompt tokens; the lookup gives the base tier."""
    found = model_price("claude-sonnet-4-5", provider="anthropic")
    assert found is not None
    assert found.input_per_token * _MTOK == Decimal(3)
    assert found.cache_write_per_token * _MTOK == Decimal("3.75")


def test_unknown_model_is_none_in_both_sources(without_genai_prices: None) -> None:
    assert model_price("no-such-model-xyz") is None


def test_unknown_model_is_none_with_genai_prices() -> None:
    assert model_price("no-such-model-xyz") is None
    assert model_price("gpt-4o", provider="no-such-provider") is None


def test_built_in_table_without_the_extra(without_genai_prices: None) -> None:
    """Without genai-prices the table answers, for plain and dated names."""
    found = model_price("claude-sonnet-4-5-20250929")
    assert found == ModelPrice(
        model="claude-sonnet-4-5",
        provider="anthropic",
        input_per_token=Decimal("3.00") / _MTOK,
        output_per_token=Decimal("15.00") / _MTOK,
        cache_read_per_token=Decimal("0.30") / _MTOK,
        cache_write_per_token=Decimal("3.75") / _MTOK,
        source="built-in",
    )
    assert model_price("GPT-4o-mini") is not None  # names are matched without case
    assert model_price("gpt-4o", provider="openai") is not None
    assert model_price("gpt-4o", provider="anthropic") is None


def test_call_costs_use_the_table_without_the_extra(without_genai_prices: None) -> None:
    """A call's cost falls back to the table's rates; unknown models stay unpriced."""
    usage = Usage(
        model="gpt-4o-2024-08-06",
        provider="openai",
        flavor="chat",
        input_tokens=1000,  # of which 400 were read from the cache
        output_tokens=100,
        cache_read_tokens=400,
    )
    assert price(usage) == Decimal("0.0030")  # 600 x 2.50 + 400 x 1.25 + 100 x 10.00, per MTok
    assert price(Usage(model="mystery", provider="openai", flavor="chat", input_tokens=1,
                       output_tokens=1)) is None  # fmt: skip


@pytest.mark.parametrize("model", sorted(BUILT_IN))
def test_built_in_table_agrees_with_genai_prices(model: str) -> None:
    """The table's rates are genai-prices' base tier (if a new release moves a price, update it)."""
    listed = model_price(model, provider=BUILT_IN[model][0])
    assert listed is not None, f"genai-prices no longer knows {model}"
    row = BUILT_IN[model]
    got = [
        listed.input_per_token,
        listed.output_per_token,
        listed.cache_read_per_token,
        listed.cache_write_per_token,
    ]
    assert [rate * _MTOK for rate in got] == [Decimal(r) for r in row[1:]]


def test_costs_agree_with_the_lookup() -> None:
    """``ModelPrice.cost`` prices a call as the cost report does."""
    usage = Usage(
        model="claude-haiku-4-5",
        provider="anthropic",
        flavor="default",
        input_tokens=2000,
        output_tokens=300,
        cache_read_tokens=500,
        cache_write_tokens=200,
    )
    found = model_price("claude-haiku-4-5")
    assert found is not None
    assert found.cost(usage) == price(usage)


@pytest.mark.parametrize(
    ("value", "kind"),
    [(None, TypeError), (b"gpt-4o", TypeError), ("", ValueError), ("  ", ValueError)],
)
def test_bad_names_say_what_to_give(value: object, kind: type[Exception]) -> None:
    with pytest.raises(kind, match="model name"):
        model_price(value)  # type: ignore[arg-type]


def test_a_secret_given_by_mistake_is_not_printed(caplog: pytest.LogCaptureFixture) -> None:
    """A key passed where the model goes appears in no message and no log."""
    secret = "sk-proj-" + "A1b2C3d4" * 30  # longer than any model name
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ValueError) as info:
        model_price(secret)
    assert "sk-proj" not in str(info.value)
    assert model_price("sk-proj-short1234") is None
    assert model_price("sk-proj-short1234", provider="openai") is None
    assert "sk-proj" not in caplog.text
