"""Configuration: frozen, keyword-only, validated attrs classes.

``Policy`` bundles one ``RetryPolicy``, ``BreakerPolicy``, ``TimeoutPolicy`` and
``BudgetPolicy``. Durations are float seconds. Derive variants with
``attrs.evolve(policy, ...)``, which runs the validators again. Loading from a
dict or TOML lives in ``seawall.config``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import attrs

from seawall.outcome import Category

__all__ = [
    "BACKOFFS",
    "DEFAULT_RETRY_ON",
    "IDEMPOTENT_METHODS",
    "JITTERS",
    "BreakerPolicy",
    "BudgetPolicy",
    "Policy",
    "RetryPolicy",
    "TimeoutPolicy",
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
JITTERS = ("full", "equal", "none")

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{name}={value!r} is not a number; give it in seconds or as a count, e.g. {name}=1.5"
        raise TypeError(msg)
    if math.isnan(value):
        msg = f"{name} is NaN; give a real number"
        raise ValueError(msg)
    return float(value)


def _at_least(minimum: float, *, strict: bool = False) -> Validator:
    """A validator: the value is a number at least ``minimum`` (above it when strict)."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        number = _number(value, attribute.name)
        if number < minimum or (strict and number == minimum):
            bound = "above" if strict else "at least"
            msg = f"{attribute.name}={value!r} is out of range; it must be {bound} {minimum:g}"
            raise ValueError(msg)

    return check


def _optional_positive(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if _number(value, attribute.name) <= 0:
        msg = (
            f"{attribute.name}={value!r} must be a positive number of seconds; "
            f"use None for no limit"
        )
        raise ValueError(msg)


def _between(low: float, high: float) -> Validator:
    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        number = _number(value, attribute.name)
        if not low <= number <= high:
            msg = (
                f"{attribute.name}={value!r} is out of range; "
                f"it must be between {low:g} and {high:g}"
            )
            raise ValueError(msg)

    return check


def _one_of(choices: Iterable[str]) -> Validator:
    allowed = tuple(choices)

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in allowed:
            names = ", ".join(repr(c) for c in allowed)
            msg = f"{attribute.name}={value!r} is not known; use one of {names}"
            raise ValueError(msg)

    return check


def _whole(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{attribute.name}={value!r} must be a whole number"
        raise TypeError(msg)


def _upper_frozenset(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    return frozenset(str(v).upper() for v in value)


def _categories(value: Iterable[Category | str]) -> frozenset[Category]:
    if isinstance(value, str | Category):
        value = [value]
    out = set()
    for item in value:
        if isinstance(item, Category):
            out.add(item)
            continue
        try:
            out.add(Category(str(item).lower()))
        except ValueError:
            names = ", ".join(c.value for c in Category)
            msg = f"retry_on: {item!r} is not a category; use some of {names}"
            raise ValueError(msg) from None
    return frozenset(out)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and how long to retry one outbound request.

    ``max_attempts`` counts the first try (1 means never retry). The delay
    before attempt *n+1* comes from the ``backoff`` strategy and ``jitter``
    and never exceeds ``max_delay``; a server's ``Retry-After`` can raise it,
    up to ``retry_after_max``, beyond which seawall stops retrying.
    """

    max_attempts: int = attrs.field(default=3, validator=[_whole, _at_least(1)])
    backoff: Literal["exponential", "decorrelated", "constant", "linear"] = attrs.field(
        default="exponential", validator=_one_of(BACKOFFS)
    )
    jitter: Literal["full", "equal", "none"] = attrs.field(
        default="full", validator=_one_of(JITTERS)
    )
    base_delay: float = attrs.field(default=0.1, validator=_at_least(0))
    multiplier: float = attrs.field(default=2.0, validator=_at_least(1))
    max_delay: float = attrs.field(default=20.0, validator=_at_least(0))
    retry_methods: frozenset[str] = attrs.field(
        default=IDEMPOTENT_METHODS, converter=_upper_frozenset
    )
    retry_on: frozenset[Category] = attrs.field(default=DEFAULT_RETRY_ON, converter=_categories)
    retry_after_max: float = attrs.field(default=60.0, validator=_at_least(0))

    @max_delay.validator
    def _check_max_delay(self, _attribute: attrs.Attribute[float], value: float) -> None:
        if value < self.base_delay:
            msg = (
                f"max_delay={value!r} is below base_delay={self.base_delay!r}; "
                "raise max_delay or lower base_delay"
            )
            raise ValueError(msg)


@attrs.frozen(kw_only=True)
class BreakerPolicy:
    """When to stop calling an upstream that keeps failing, and how to come back.

    The breaker opens after ``failure_threshold`` consecutive failed calls (a
    call fails when it gives up, retries included), or when at least
    ``minimum_calls`` of the last ``window`` attempts were recorded and the
    share of failures among them reached ``failure_rate``. After
    ``recovery_timeout`` seconds (jittered down by up to 20 %) it lets
    ``half_open_max_calls`` probes through; ``success_threshold`` successes
    close it, one failure opens it again.
    """

    failure_threshold: int = attrs.field(default=5, validator=[_whole, _at_least(1)])
    failure_rate: float = attrs.field(default=0.5, validator=_between(0.0, 1.0))
    window: int = attrs.field(default=100, validator=[_whole, _at_least(1)])
    minimum_calls: int = attrs.field(default=20, validator=[_whole, _at_least(1)])
    recovery_timeout: float = attrs.field(default=30.0, validator=_at_least(0))
    half_open_max_calls: int = attrs.field(default=1, validator=[_whole, _at_least(1)])
    success_threshold: int = attrs.field(default=1, validator=[_whole, _at_least(1)])
    enabled: bool = True

    @minimum_calls.validator
    def _check_minimum_calls(self, _attribute: attrs.Attribute[int], value: int) -> None:
        if value > self.window:
            msg = (
                f"minimum_calls={value!r} is above window={self.window!r}, so the failure "
                "rate could never trip the breaker; lower minimum_calls or widen window"
            )
            raise ValueError(msg)


@attrs.frozen(kw_only=True)
class TimeoutPolicy:
    """Time limits in seconds; ``None`` means no limit.

    ``attempt`` bounds one attempt up to the response headers (and an error
    body); ``deadline`` bounds the whole call, retries and waits included.
    An inbound deadline (``seawall.deadline()``, the ASGI middleware) can only
    shorten it.
    """

    attempt: float | None = attrs.field(default=30.0, validator=_optional_positive)
    deadline: float | None = attrs.field(default=120.0, validator=_optional_positive)


@attrs.frozen(kw_only=True)
class BudgetPolicy:
    """A retry budget per key, so retries cannot multiply load during an outage.

    Each request deposits ``ratio`` tokens and each retry withdraws one; the
    last ``window`` seconds count, plus a floor of ``min_retries_per_second``
    so that a quiet key can still retry.
    """

    ratio: float = attrs.field(default=0.5, validator=_at_least(0))
    min_retries_per_second: float = attrs.field(default=5.0, validator=_at_least(0))
    window: float = attrs.field(default=10.0, validator=_at_least(0, strict=True))
    enabled: bool = True


def _key_choice(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        msg = (
            f"{attribute.name}={value!r} must be a non-empty string "
            "(a fixed key, or 'model' to key by the JSON body's model) or None"
        )
        raise ValueError(msg)


@attrs.frozen(kw_only=True)
class Policy:
    """Everything seawall applies to one upstream (a route), or to all by default.

    ``key`` names the breaker, budget and cooldown the route shares; ``None``
    keys by ``scheme://host:port``, a string shares one state under that name.
    ``llm`` marks the route as an LLM API for the built-in LLM plugin.
    """

    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    breaker: BreakerPolicy = attrs.field(factory=BreakerPolicy)
    timeout: TimeoutPolicy = attrs.field(factory=TimeoutPolicy)
    budget: BudgetPolicy = attrs.field(factory=BudgetPolicy)
    key: str | None = attrs.field(default=None, validator=_key_choice)
    llm: bool = False

    @retry.validator
    def _check_types(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        # attrs runs this for ``retry`` only; check the other sub-policies too.
        expected = {
            "retry": RetryPolicy,
            "breaker": BreakerPolicy,
            "timeout": TimeoutPolicy,
            "budget": BudgetPolicy,
        }
        for name, cls in expected.items():
            got = getattr(self, name, value) if name != attribute.name else value
            if not isinstance(got, cls):
                msg = f"Policy({name}=...) takes a seawall.{cls.__name__}, not {got!r}"
                raise TypeError(msg)

    @classmethod
    def for_llm(cls, **overrides: Any) -> Policy:
        """A preset for LLM API routes (OpenAI, Anthropic and alike); ``overrides`` win.

        - ``llm=True``: the built-in LLM plugin reads the providers' error
          bodies and rate-limit headers, and successful calls are priced.
        - POST and PATCH are retried: completion endpoints are safe to retry on
          a 429, a 5xx or a connection error before a response started (the
          providers' own SDKs do so); a streamed response is never retried.
        - Attempts may take 600 s (long generations; the timeout covers the
          time to the response headers), within a 900 s deadline.
        - Server waits are honoured up to 120 s; backoff starts at 0.5 s and
          is capped at 30 s; 4 attempts.
        - The breaker opens after 5 failed calls in a row and probes
          again after 60 s (429s never trip it: they start a cooldown).

        Example: ``Policy.for_llm(key="model", retry=RetryPolicy(max_attempts=2))``.
        """
        defaults: dict[str, Any] = {
            "retry": RetryPolicy(
                max_attempts=4,
                base_delay=0.5,
                max_delay=30.0,
                retry_methods=IDEMPOTENT_METHODS | {"POST", "PATCH"},
                retry_after_max=120.0,
            ),
            "breaker": BreakerPolicy(
                failure_threshold=5, minimum_calls=20, failure_rate=0.5, recovery_timeout=60.0
            ),
            "timeout": TimeoutPolicy(attempt=600.0, deadline=900.0),
            "llm": True,
        }
        defaults.update(overrides)
        return cls(**defaults)
