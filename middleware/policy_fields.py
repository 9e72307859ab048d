"""The vocabularies of the policy fields, and the converters and validators
``seawall.policy`` gives them (a clear error that says what to write instead).

The public names are re-exported by ``seawall.policy``, their old home.
"""

from __future__ import annotations

import difflib
from typing import Any

import attrs

from seawall._checks import http_method, name_list, number, show
from seawall._patterns import unseen
from seawall.outcome import Category

__all__ = [
    "BACKOFFS",
    "BREAKER_MODES",
    "BUDGET_OFF",
    "DEFAULT_JITTER_FACTOR",
    "DEFAULT_RETRY_ON",
    "HOLD_OFF",
    "IDEMPOTENT_METHODS",
    "JITTERS",
    "PROBES",
    "SECONDS",
    "categories",
    "jitter_factor",
    "key_choice",
    "methods",
]

#: Methods retried by default: the idempotent ones (RFC 9110, section 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

#: Categories retried by default. CONFLICT (409) and UNKNOWN are here so that
#: their classifications' ``max_retries=1`` can allow the one retry DESIGN.md
#: promises; remove them to never retry those (docs/architecture.md).
DEFAULT_RETRY_ON = frozenset(
    {
        Category.NETWORK,
        Category.TIMEOUT,
        Category.RATE_LIMIT,
        Category.SERVER,
        Category.CONFLICT,
        Category.UNKNOWN,
    }
)

#: Backoff strategies the built-in plugin knows.
BACKOFFS = ("exponential", "decorrelated", "constant", "linear")

#: Jitter modes the built-in plugin knows.
JITTERS = ("full", "equal", "proportional", "none")

#: ``jitter_factor`` when ``jitter="proportional"`` and no factor is given: ±10 %.
DEFAULT_JITTER_FACTOR = 0.1


def methods(value: Any) -> frozenset[str]:
    """``RetryPolicy.retry_methods`` as upper-case names; a clear error for anything else."""
    name = "RetryPolicy.retry_methods"
    return name_list(
        value, name, what="HTTP methods", example="['GET', 'PUT']", item=http_method(name)
    )


def _category(item: Any) -> Category:
    if isinstance(item, Category):
        return item
    if not isinstance(item, str):
        msg = (
            f"RetryPolicy.retry_on: {show(item)} is not a category name; "
            "give strings such as 'server'"
        )
        raise TypeError(msg)
    try:
        return Category(item.strip().lower())
    except ValueError:
        names = [c.value for c in Category]
        near = difflib.get_close_matches(item.strip().lower(), names, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        msg = (
            f"RetryPolicy.retry_on: {show(item)} is not a category; "
            f"{hint}use some of {', '.join(names)}"
        )
        raise ValueError(msg) from None


def categories(value: Any) -> frozenset[Category]:
    """``RetryPolicy.retry_on`` as categories, from members or names (``'server'``)."""
    if isinstance(value, Category):
        value = [value]
    example = "['network', 'server']"
    return name_list(
        value, "RetryPolicy.retry_on", what="categories", example=example, item=_category
    )


#: The unit shown in errors about durations.
SECONDS = "seconds"
_FACTOR = number(0, high=1, strict=True)


def jitter_factor(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """``None``, or a fraction in (0, 1], and only with ``jitter="proportional"``."""
    if value is None:
        return
    _FACTOR(instance, attribute, value)
    jitter = instance.jitter
    if jitter != "proportional" and jitter in JITTERS:  # a bad jitter reports itself
        msg = (
            f"{type(instance).__name__}.jitter_factor={value!r} applies only to "
            f"jitter='proportional', but jitter={jitter!r}; set jitter='proportional' "
            "or leave jitter_factor out"
        )
        raise ValueError(msg)


#: Hints shown with a bad value of the fields they name.
BUDGET_OFF = "to turn the budget off, set enabled to False instead"
HOLD_OFF = "hold=0 fails calls at once while the breaker is open (the classic breaker)"
PROBES = "probes above 0.05 of the requests would cost more than an outage may (0 = classic)"

#: The breaker's modes: open/half-open with held calls, or SRE adaptive throttling.
BREAKER_MODES = ("classic", "adaptive")


def key_choice(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """``Policy.key``: ``None``, a fixed key, or ``'model'``; no control, bidi or invisible
    character (a pasted escape sequence, a zero-width space: the key would name states
    no one means, or read as another key; shown escaped)."""
    if value is not None and (not isinstance(value, str) or not value):
        msg = (
            f"{type(instance).__name__}.{attribute.name} must be a non-empty string "
            f"(a fixed key, or 'model' to key by the JSON body's model) or None, "
            f"got {show(value)}"
        )
        raise (ValueError if value == "" else TypeError)(msg)
    if value is None or value.isprintable():  # the common case, cheap: checked at each evolve
        return
    why = unseen(value, "the name alone, e.g. 'payments'")
    if why is not None:
        msg = (
            f"{type(instance).__name__}.{attribute.name} must be a name without control, "
            f"bidi or invisible characters, got {show(value)}: {why}"
        )
        raise ValueError(msg)
