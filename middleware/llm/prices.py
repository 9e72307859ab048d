"""What an LLM call cost in US dollars.

Prices come from ``genai-prices`` (extra ``llm``; imported lazily, here only).
"""

from __future__ import annotations

import logging
from decimal import Decimal

from seawall.llm.usage import Usage

__all__ = ["price"]

log = logging.getLogger("seawall.costs")


def price(usage: Usage) -> Decimal | None:
    """The price of ``usage`` in USD from genai-prices, or ``None`` for an unknown model."""
    try:
        from genai_prices import Usage as PriceUsage
        from genai_prices import calc_price
    except ImportError:  # pragma: no cover - the "llm" extra is missing
        return None
    tokens = PriceUsage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens or None,
        cache_write_tokens=usage.cache_write_tokens or None,
    )
    try:
        return calc_price(tokens, usage.model, provider_id=usage.provider).total_price
    except Exception as exc:  # unknown model (LookupError) or a price it cannot compute
        log.debug("seawall: no price for model %r: %r", usage.model, exc)
        return None
