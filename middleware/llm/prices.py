"""What an LLM call cost in US dollars, and what a model's tokens cost.

Prices come from ``genai-prices`` (extra ``llm``; imported lazily, here only)
and, without it, from ``BUILT_IN``: a short table of current OpenAI and
Anthropic models, their base-tier prices as genai-prices 0.2.3 listed them
(December 2026). Install ``seawall[llm]`` for the maintained database.
"""

from __future__ import annotations

import decimal
import functools
import logging
import re
import threading
from decimal import Decimal
from typing import Any, Literal

import attrs

from seawall.llm.rated import genai_usage, total_price
from seawall.llm.usage import MODEL_NAME_MAX, Usage
from seawall.reports import MONEY

__all__ = ["BUILT_IN", "MODEL_NAME_MAX", "ModelPrice", "model_price", "price", "warm_up"]

log = logging.getLogger("seawall.costs")

_MILLION = Decimal(1_000_000)

#: USD per million tokens: (provider, input, output, cache read, cache write).
#: Base tier only (long prompts of some models cost more); prices change, and
#: genai-prices follows them: this table is the fallback when it is missing.
BUILT_IN: dict[str, tuple[str, str, str, str, str]] = {
    "gpt-4o": ("openai", "2.50", "10.00", "1.25", "2.50"),
    "gpt-4o-mini": ("openai", "0.15", "0.60", "0.075", "0.15"),
    "gpt-4.1": ("openai", "2.00", "8.00", "0.50", "2.00"),
    "gpt-4.1-mini": ("openai", "0.40", "1.60", "0.10", "0.40"),
    "gpt-4.1-nano": ("openai", "0.10", "0.40", "0.025", "0.10"),
    "gpt-5": ("openai", "1.25", "10.00", "0.125", "1.25"),
    "gpt-5-mini": ("openai", "0.25", "2.00", "0.025", "0.25"),
    "o3": ("openai", "2.00", "8.00", "0.50", "2.00"),
    "o4-mini": ("openai", "1.10", "4.40", "0.275", "1.10"),
    "claude-opus-4-5": ("anthropic", "5.00", "25.00", "0.50", "6.25"),
    "claude-opus-4-1": ("anthropic", "15.00", "75.00", "1.50", "18.75"),
    "claude-sonnet-4-5": ("anthropic", "3.00", "15.00", "0.30", "3.75"),
    "claude-sonnet-4-0": ("anthropic", "3.00", "15.00", "0.30", "3.75"),
    "claude-haiku-4-5": ("anthropic", "1.00", "5.00", "0.10", "1.25"),
}

#: The thread importing genai-prices ahead of the first answer (``warm_up``), once started.
warming: threading.Thread | None = None
_warming_lock = threading.Lock()


def warm_up() -> None:
    """Import genai-prices and read its database in a thread of seawall's own, once a
    process (called when a key is first seen to be an LLM route, before its request goes).

    The first priced answer read them on the event loop: 0.2-0.3 s during which every
    other request of the app waited. In a thread it competes for the GIL in slices
    instead; an answer that comes back sooner waits only for the rest of the import.
    Without the ``llm`` extra it ends at once.
    """
    global warming
    if warming is not None:
        return
    with _warming_lock:
        if warming is None:
            warming = threading.Thread(target=_import_prices, name="seawall.prices", daemon=True)
            warming.start()


def _import_prices() -> None:
    try:
        from genai_prices.data_snapshot import get_snapshot

        get_snapshot()
    except Exception:  # missing (no "llm" extra) or broken: the answer's own read says so
        return


#: Other names of the built-in models (the providers' aliases).
_ALIASES = {"claude-sonnet-4": "claude-sonnet-4-0"}

#: A date the providers append to a model's name: ``-2024-08-06``, ``-20250929``.
_DATED = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")


@attrs.frozen(kw_only=True)
class ModelPrice:
    """What one token of a model costs, in US dollars (``Decimal``, exact).

    ``model`` is the name the price is listed under (``gpt-4o`` for
    ``gpt-4o-2024-08-06``); ``source`` says where it came from. Cache reads
    and writes are prompt tokens served from or written to the provider's
    prompt cache; where a provider has no such price, it is the input price.
    """

    model: str
    provider: str | None
    input_per_token: Decimal
    output_per_token: Decimal
    cache_read_per_token: Decimal
    cache_write_per_token: Decimal
    source: Literal["genai-prices", "built-in"]

    def cost(self, usage: Usage) -> Decimal:
        """The price of ``usage`` at these rates (cached tokens are part of the input)."""
        cached = usage.cache_read_tokens + usage.cache_write_tokens
        with decimal.localcontext(MONEY):  # not the caller's: see seawall.reports.MONEY
            return (
                max(0, usage.input_tokens - cached) * self.input_per_token
                + usage.output_tokens * self.output_per_token
                + usage.cache_read_tokens * self.cache_read_per_token
                + usage.cache_write_tokens * self.cache_write_per_token
            )


def _check_name(model: Any) -> str:
    if not isinstance(model, str):
        msg = (
            f"model_price(model) takes a model name such as 'gpt-4o', not a {type(model).__name__}"
        )
        raise TypeError(msg)
    name = model.strip()
    if not name or len(name) > MODEL_NAME_MAX:
        # The value is not shown: a wrong argument can be a credential.
        msg = (
            f"model_price(model) takes a model name of 1 to {MODEL_NAME_MAX} characters, "
            f"got {len(name)}; give the name the API answers with, such as 'gpt-4o'"
        )
        raise ValueError(msg)
    return name


@functools.lru_cache(maxsize=256)  # names come from answers: bounded; rows never change
def _built_in(name: str, provider: str | None = None) -> ModelPrice | None:
    lowered = name.lower()
    for candidate in (lowered, _DATED.sub("", lowered)):
        candidate = _ALIASES.get(candidate, candidate)
        row = BUILT_IN.get(candidate)
        if row is not None and provider not in (None, row[0]):
            return None
        if row is not None:
            provider, *rates = row
            with decimal.localcontext(MONEY):
                per_token = [Decimal(rate) / _MILLION for rate in rates]
            return ModelPrice(
                model=candidate,
                provider=provider,
                input_per_token=per_token[0],
                output_per_token=per_token[1],
                cache_read_per_token=per_token[2],
                cache_write_per_token=per_token[3],
                source="built-in",
            )
    return None


def model_price(model: str, *, provider: str | None = None) -> ModelPrice | None:
    """What a token of ``model`` costs, or ``None`` when no price is known for it.

    From genai-prices when the ``llm`` extra is installed (``provider``, such
    as ``"openai"``, narrows the search), else from ``BUILT_IN``. The base
    tier: prompts long enough for a higher tier cost more. A name that is not
    a string, or empty, or longer than 200 characters, raises.
    """
    name = _check_name(model)
    try:
        from genai_prices import Usage as PriceUsage
        from genai_prices import calc_price
    except ImportError:
        return _built_in(name, provider)

    def one(**tokens: int) -> Any:
        with decimal.localcontext(MONEY):  # genai-prices computes in the current context
            return calc_price(PriceUsage(**tokens), name, provider_id=provider)

    try:
        found = one(input_tokens=1)
        rates = [
            found.total_price,
            one(output_tokens=1).total_price,
            one(input_tokens=1, cache_read_tokens=1).total_price,
            one(input_tokens=1, cache_write_tokens=1).total_price,
        ]
    except Exception:  # unknown model or provider (LookupError), or no price for it
        return None  # nothing logged: a name given by mistake can be a credential
    return ModelPrice(
        model=found.model.id,
        provider=found.provider.id,
        input_per_token=rates[0],
        output_per_token=rates[1],
        cache_read_per_token=rates[2],
        cache_write_per_token=rates[3],
        source="genai-prices",
    )


def price(usage: Usage) -> Decimal | None:
    """The price of ``usage`` in USD, or ``None`` for an unknown model.

    From genai-prices when installed (it knows tiers and providers), else at
    the built-in table's rates. A model name longer than ``MODEL_NAME_MAX``
    has no price (and is not looked up: the lookup's time grows with the name).
    """
    if not usage.model or len(usage.model) > MODEL_NAME_MAX:
        return None
    try:
        from genai_prices import data_snapshot
    except ImportError:  # the "llm" extra is missing: the built-in table
        rates = _built_in(usage.model)
        return rates.cost(usage) if rates is not None else None
    counts = {
        "input": usage.input_tokens,
        "output": usage.output_tokens,
        "cache_read": usage.cache_read_tokens,
        "cache_write": usage.cache_write_tokens,
    }
    try:
        with decimal.localcontext(MONEY):  # genai-prices computes in the current context
            return total_price(data_snapshot.get_snapshot(), usage.model, usage.provider, counts)
    except Exception as exc:
        if type(exc) is LookupError:  # a model the database does not know
            log.debug("seawall: no price for model %r: %r", usage.model, exc)
            return None
        # Anything else (a KeyError too): total_price reads genai-prices' internals,
        # which a release may move; its public function answers instead.
    try:  # genai-prices' public function, as total_price's answer would be
        from genai_prices import calc_price

        tokens = genai_usage(counts)
        with decimal.localcontext(MONEY):
            found: Decimal = calc_price(tokens, usage.model, provider_id=usage.provider).total_price
            return found
    except Exception as exc:  # a price it cannot compute
        log.debug("seawall: no price for model %r: %r", usage.model, exc)
        return None
