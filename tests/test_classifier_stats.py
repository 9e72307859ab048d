"""``sw.classifier_stats()``: cache hit rates and how many patterns are loaded."""

from __future__ import annotations

import pytest

import seawall
from seawall.tables import BUILTIN_PATTERNS


def _sw(*patterns: str) -> seawall.Seawall:
    sw = seawall.Seawall(
        seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1)), entrypoints=False
    )
    for regex in patterns:
        sw.add_pattern(regex, seawall.Classification(category=seawall.Category.CLIENT))
    return sw


async def _fail(sw: seawall.Seawall, message: str) -> None:
    async def boom() -> None:
        raise RuntimeError(message)

    with pytest.raises(RuntimeError):
        await sw.using(key="k").call(boom)


async def test_patterns_loaded_counts_built_in_and_user_patterns() -> None:
    sw = _sw()
    stats = sw.classifier_stats()
    assert stats["builtin_patterns"] == len(BUILTIN_PATTERNS) > 0
    assert stats["user_patterns"] == 0
    assert stats["patterns_loaded"] == len(BUILTIN_PATTERNS)
    sw.add_pattern("out of stock", seawall.Classification(category=seawall.Category.CLIENT))
    sw.add_pattern("card declined", seawall.Classification(category=seawall.Category.CLIENT))
    assert sw.classifier_stats()["patterns_loaded"] == len(BUILTIN_PATTERNS) + 2


async def test_cache_hit_rate_of_real_calls() -> None:
    """Four failures with two distinct messages: half the lookups hit the cache."""
    sw = _sw()
    assert sw.classifier_stats()["cache_hit_rate"] is None  # no lookup yet
    for message in ("weird failure one", "weird failure one", "other", "other"):
        await _fail(sw, message)
    stats = sw.classifier_stats()
    assert (stats["cache_hits"], stats["cache_misses"]) == (2, 2)
    assert stats["cache_hit_rate"] == 0.5


async def test_user_pattern_cache_hit_rate() -> None:
    """The user's patterns keep their own cache; three of four lookups hit it."""
    sw = _sw("card declined")
    assert sw.classifier_stats()["user_pattern_cache_hit_rate"] is None
    for _ in range(4):
        await _fail(sw, "card declined for order 7")
    stats = sw.classifier_stats()
    assert stats["user_pattern_matches"] == 4
    assert (stats["user_pattern_cache_hits"], stats["user_pattern_cache_misses"]) == (3, 1)
    assert stats["user_pattern_cache_hit_rate"] == 0.75
