"""The user's message patterns (``add_pattern``, ``Seawall(patterns=...)``).

Asked before every other built-in classifier (see ``PRIORITY`` in
``seawall.plugins.builtin``), so a pattern wins over exception types, HTTP
statuses and the LLM providers' error codes. What a pattern is matched
against (``text_of``):

- an attempt that raised: ``str(exc)`` (a stand-in naming its type when its
  ``__str__`` raises: ``seawall.redact.exception_str``);
- an error response (status 400 or above): ``"HTTP <status>"``, a newline,
  then the body decoded as UTF-8 (undecodable bytes replaced);

either cut to its first 2000 characters. A pattern with ``exception_types``
matches only exceptions of those types, never a response. Successes are
never matched. Results for exceptions are cached per (type, message).
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from collections.abc import Iterable
from typing import Any

from seawall.outcome import Classification, Outcome
from seawall.plugins import hookimpl
from seawall.redact import exception_str
from seawall.tables import Pattern

__all__ = ["CACHE_SIZE", "MAX_TEXT", "PatternClassifier", "plugin", "text_of"]

#: How many (type, message) results the cache keeps.
CACHE_SIZE = 1024
#: Longest text matched against patterns.
MAX_TEXT = 2000


def text_of(outcome: Outcome) -> str | None:
    """What patterns are matched against for ``outcome``; ``None`` for a success."""
    exc = outcome.exception
    if exc is not None:
        return exception_str(exc)[:MAX_TEXT]
    status = outcome.status
    if status is None or status < 400:
        return None
    head = f"HTTP {status}\n"
    body = outcome.body or b""
    return (head + body[: MAX_TEXT * 4].decode("utf-8", "replace"))[:MAX_TEXT]


class PatternClassifier:
    """One per ``Seawall``: the user's patterns, newest first, and a bounded cache."""

    def __init__(self) -> None:
        self.patterns: list[Pattern] = []
        self._cache: OrderedDict[tuple[type[BaseException], str], Classification | None] = (
            OrderedDict()
        )
        self.stats: Counter[str] = Counter()

    def add_pattern(
        self,
        regex: str | re.Pattern[str],
        classification: Classification,
        exception_types: Iterable[type[BaseException]] = (),
    ) -> Pattern:
        """Try ``regex`` before every built-in classifier (and earlier user patterns)."""
        pattern = Pattern(regex, classification, tuple(exception_types))
        self.patterns.insert(0, pattern)
        self._cache.clear()
        return pattern

    def snapshot(self) -> dict[str, Any]:
        """How many patterns there are, how often one decided, and the cache's hit rate."""
        stats = self.stats
        lookups = stats["cache_hits"] + stats["cache_misses"]
        return {
            "user_patterns": len(self.patterns),
            "user_pattern_matches": stats["matches"],
            "user_pattern_cache_hits": stats["cache_hits"],
            "user_pattern_cache_misses": stats["cache_misses"],
            "user_pattern_cache_hit_rate": stats["cache_hits"] / lookups if lookups else None,
        }

    def reset(self) -> None:
        """Zero the counts (``sw.reset_metrics()``); patterns and cache are kept."""
        self.stats.clear()

    @hookimpl(trylast=True)
    def seawall_classify(self, outcome: Outcome) -> Classification | None:
        """The first user pattern that matches the outcome's text, or ``None``."""
        if not self.patterns:
            return None
        found = self.match(outcome)
        if found is not None:
            self.stats["matches"] += 1
        return found

    def match(self, outcome: Outcome) -> Classification | None:
        """The classification of the first matching user pattern, or ``None``."""
        text = text_of(outcome)
        if text is None:
            return None
        exc = outcome.exception
        if exc is None:
            for pattern in self.patterns:
                if not pattern.exception_types and pattern.regex.search(text) is not None:
                    return pattern.classification
            return None
        cache_key = (type(exc), text)
        if cache_key in self._cache:
            self.stats["cache_hits"] += 1
            self._cache.move_to_end(cache_key)
            return self._cache[cache_key]
        self.stats["cache_misses"] += 1
        found = next((p.classification for p in self.patterns if p.matches(exc, text)), None)
        self._cache[cache_key] = found
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return found


def plugin() -> PatternClassifier:
    """A fresh, empty pattern list for one plugin manager."""
    return PatternClassifier()
