"""Reading an answer's counts by a plan gives what genai-prices' extractor gives.

``seawall.llm.extract.read_usage`` reads plain counts itself and leaves
anything else to genai-prices: whatever the answer holds, the counts are
the same, or both refuse.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seawall.llm import extract
from seawall.llm import usage as usage_module

pytest.importorskip("genai_prices")
from genai_prices import data_snapshot
from genai_prices.types import Usage

#: Every key any OpenAI or Anthropic extractor maps, with a few it does not.
_KEYS = sorted(
    {
        step
        for provider in ("openai", "anthropic")
        for extractor in data_snapshot.get_snapshot().find_provider(None, provider, None).extractors
        or ()
        for mapping in extractor.mappings
        for step in ([mapping.path] if isinstance(mapping.path, str) else mapping.path)
        if isinstance(step, str)
    }
    | {"total_tokens", "service_tier"}
)

_LEAF = st.one_of(
    st.integers(-5, 10**9),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.lists(st.integers(0, 5), max_size=2),
)
_COUNT = st.integers(0, 10**6)
_TABLE = st.fixed_dictionaries({}, optional=dict.fromkeys(_KEYS, st.one_of(_COUNT, _LEAF)))
_VALUE = st.one_of(_COUNT, _COUNT, _LEAF, _TABLE)
#: Each key there about half the time, mostly counts: the required ones often all there.
_USAGE = st.fixed_dictionaries({}, optional=dict.fromkeys(_KEYS, _VALUE))
_FLAVORS = [("openai", "chat"), ("openai", "responses"), ("anthropic", "default")]


def _genai(provider: Any, data: dict[str, Any], flavor: str) -> Any:
    try:
        return provider.extract_usage(data, api_flavor=flavor)[1]
    except Exception as exc:
        return type(exc)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(_FLAVORS), usage=st.one_of(_USAGE, _LEAF))
def test_the_counts_read_by_plan_are_genai_prices_counts(
    which: tuple[str, str], usage: Any
) -> None:
    """Any usage (counts, floats, bools, negatives, nulls, strings, nested tables) is read
    to the same ``Usage`` as genai-prices reads it, or both raise."""
    name, flavor = which
    provider = data_snapshot.get_snapshot().find_provider(None, name, None)
    data = {"model": "gpt-4o", "usage": usage}
    expected = _genai(provider, data, flavor)
    if not isinstance(expected, Usage):
        with pytest.raises(expected):
            extract.read_usage(provider, data, flavor)
        return
    values, found = extract.read_usage(provider, data, flavor)
    assert (found if found is not None else Usage(**values)) == expected
    assert values == expected.__dict__


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(_FLAVORS), usage=_USAGE)
def test_the_four_counts_are_those_genai_prices_infers(which: tuple[str, str], usage: Any) -> None:
    """The counts kept (input, output, cache reads and writes) are genai-prices' own
    attributes of the ``Usage`` it reads, inferred ones included, or both refuse."""
    name, flavor = which
    provider = data_snapshot.get_snapshot().find_provider(None, name, None)
    data = {"model": "gpt-4o", "usage": usage}
    try:
        found = provider.extract_usage(data, api_flavor=flavor)[1]
        expected = [usage_module._tokens(getattr(found, n)) for n in usage_module._COUNT_NAMES]
    except Exception:
        expected = None
    assert usage_module._counts(data, name, flavor) == expected
