"""Configuration: frozen, keyword-only, validated attrs classes.

``Policy`` bundles one ``RetryPolicy``, ``BreakerPolicy``, ``TimeoutPolicy`` and
``BudgetPolicy``. Durations are float seconds. Derive variants with
``attrs.evolve(policy, ...)``, which runs the validators again. Loading from a
dict or TOML lives in ``seawall.config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from seawall._checks import boolean, number, one_of, optional_number, show, whole
from seawall.outcome import Category
from seawall.policy_fields import (
    BACKOFFS,
    BREAKER_MODES,
    BUDGET_OFF,
    DEFAULT_JITTER_FACTOR,
    DEFAULT_RETRY_ON,
    HOLD_OFF,
    IDEMPOTENT_METHODS,
    JITTERS,
    PROBES,
    SECONDS,
    categories,
    jitter_factor,
    key_choice,
    methods,
)

__all__ = [
    "BACKOFFS",
    "BREAKER_MODES",
    "DEFAULT_JITTER_FACTOR",
    "DEFAULT_RETRY_ON",
    "IDEMPOTENT_METHODS",
    "JITTERS",
    "BreakerPolicy",
    "BudgetPolicy",
    "Policy",
    "RetryPolicy",
    "TimeoutPolicy",
]


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and how long to retry one outbound request.

    ``max_attempts`` counts the first try (1 means never retry). The delay
    before attempt *n+1* comes from the ``backoff`` strategy and ``jitter``
    and never exceeds ``max_delay``; a server's ``Retry-After`` can raise it,
    up to ``retry_after_max``, beyond which seawall stops retrying.

    ``jitter``: ``"full"`` draws from [0, d], ``"equal"`` from [d/2, d],
    ``"proportional"`` from [d(1-f), d(1+f)] with ``f = jitter_factor``
    (0.1, i.e. ±10 %, when left out), ``"none"`` waits d; ``max_delay``
    still caps the result. ``jitter_factor`` is only for ``"proportional"``.
    """

    max_attempts: int = attrs.field(default=3, validator=whole(1))
    backoff: Literal["exponential", "decorrelated", "constant", "linear"] = attrs.field(
        default="exponential", validator=one_of(BACKOFFS)
    )
    jitter: Literal["full", "equal", "proportional", "none"] = attrs.field(
        default="full", validator=one_of(JITTERS)
    )
    jitter_factor: float | None = attrs.field(default=None, validator=jitter_factor)
    base_delay: float = attrs.field(default=0.1, validator=number(0, unit=SECONDS))
    multiplier: float = attrs.field(default=2.0, validator=number(1))
    max_delay: float = attrs.field(default=20.0, validator=number(0, unit=SECONDS))
    retry_methods: frozenset[str] = attrs.field(default=IDEMPOTENT_METHODS, converter=methods)
    retry_on: frozenset[Category] = attrs.field(default=DEFAULT_RETRY_ON, converter=categories)
    retry_after_max: float = attrs.field(default=60.0, validator=number(0, unit=SECONDS))

    @property
    def proportion(self) -> float:
        """The proportional jitter's fraction: ``jitter_factor``, else ±10 %."""
        factor = self.jitter_factor
        return DEFAULT_JITTER_FACTOR if factor is None else factor

    @max_delay.validator
    def _check_max_delay(self, _attribute: attrs.Attribute[float], value: float) -> None:
        base = self.base_delay
        if isinstance(base, int | float) and value < base:  # a bad base_delay reports itself
            msg = (
                f"{type(self).__name__}.max_delay={value!r} is below base_delay={base!r}; "
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

    While it is open, probes come sooner under load: at most ``probe_share``
    of the key's recent request rate, never less than one per
    ``recovery_timeout``, never more than one per ``hold``. A call whose probe
    verdict is due within ``hold`` seconds (and its deadline) waits for it
    instead of failing; with the request rate known, within the probe
    interval (at most four ``hold``). At most ``hold_max_calls`` wait per key.
    After a successful probe, the held calls and the new arrivals leave in
    one queue at 1.10x the request rate until the backlog has drained.
    ``hold=0`` and ``probe_share=0`` give the classic breaker.

    ``mode="adaptive"`` replaces open/half-open by client-side adaptive
    throttling (Google SRE): each attempt is refused locally with probability
    ``max(0, (requests - k * accepts) / (requests + 1))`` over the last
    ``throttle_window`` seconds.
    """

    failure_threshold: int = attrs.field(default=5, validator=whole(1))
    failure_rate: float = attrs.field(default=0.5, validator=number(0, high=1))
    window: int = attrs.field(default=100, validator=whole(1))
    minimum_calls: int = attrs.field(default=20, validator=whole(1))
    recovery_timeout: float = attrs.field(default=30.0, validator=number(0, unit=SECONDS))
    half_open_max_calls: int = attrs.field(default=1, validator=whole(1))
    success_threshold: int = attrs.field(default=1, validator=whole(1))
    enabled: bool = attrs.field(default=True, validator=boolean)
    hold: float = attrs.field(default=0.25, validator=number(0, unit=SECONDS, hint=HOLD_OFF))
    hold_max_calls: int = attrs.field(default=100, validator=whole(1))
    probe_share: float = attrs.field(default=0.025, validator=number(0, high=0.05, hint=PROBES))
    mode: Literal["classic", "adaptive"] = attrs.field(
        default="classic", validator=one_of(BREAKER_MODES)
    )
    k: float = attrs.field(default=2.0, validator=number(1, high=100))
    throttle_window: float = attrs.field(default=10.0, validator=number(1, unit=SECONDS))

    @minimum_calls.validator
    def _check_minimum_calls(self, _attribute: attrs.Attribute[int], value: int) -> None:
        window = self.window
        if isinstance(window, int) and value > window:  # a bad window reports itself
            msg = (
                f"{type(self).__name__}.minimum_calls={value!r} is above window={window!r}, "
                "so the failure "
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

    attempt: float | None = attrs.field(
        default=30.0, validator=optional_number(0, strict=True, unit=SECONDS)
    )
    deadline: float | None = attrs.field(
        default=120.0, validator=optional_number(0, strict=True, unit=SECONDS)
    )


@attrs.frozen(kw_only=True)
class BudgetPolicy:
    """A retry budget per key, so retries cannot multiply load during an outage.

    Each request deposits ``ratio`` tokens and each retry withdraws one; the
    last ``window`` seconds count, plus a floor of ``min_retries_per_second``
    so that a quiet key can still retry.
    """

    ratio: float = attrs.field(default=0.5, validator=number(0, hint=BUDGET_OFF))
    min_retries_per_second: float = attrs.field(default=5.0, validator=number(0, hint=BUDGET_OFF))
    window: float = attrs.field(default=10.0, validator=number(0, strict=True, unit=SECONDS))
    enabled: bool = attrs.field(default=True, validator=boolean)


def merge_section(base: Any, override: Any, name: str) -> Any:
    """``base`` (a sub-policy of the LLM preset) with ``override`` applied.

    ``override`` is an instance of the same class, which replaces ``base``
    whole (an instance cannot tell a field set to its class default from one
    left out, so none of it is second-guessed), or a mapping of field names to
    values, which win over ``base``'s field by field. Validators run again.
    """
    cls = type(base)
    if isinstance(override, cls):
        return override
    if not isinstance(override, Mapping):
        msg = (
            f"Policy.for_llm({name}=...) takes a seawall.{cls.__name__} or a dict, "
            f"not {show(override)}"
        )
        raise TypeError(msg)
    known = {f.name for f in attrs.fields(cls)}
    unknown = sorted(str(k) for k in override if k not in known)
    if unknown:
        msg = (
            f"Policy.for_llm({name}=...): unknown setting(s) {', '.join(unknown)}; "
            f"known ones: {', '.join(sorted(known))}"
        )
        raise TypeError(msg)
    return attrs.evolve(base, **override)


@attrs.frozen(kw_only=True)
class Policy:
    """Everything seawall applies to one upstream (a route), or to all by default.

    ``key`` names the breaker, budget and cooldown the route shares; ``None``
    keys by ``scheme://host:port``, a string shares one state under that name.
    ``llm`` marks the route as an LLM API for the built-in LLM plugin.
    ``costs=False`` keeps an LLM route's successful answers unread: no usage
    read, no price, nothing in ``sw.costs()`` but what failures cost (its
    errors, rate-limit headers and cooldown are handled as before).
    """

    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    breaker: BreakerPolicy = attrs.field(factory=BreakerPolicy)
    timeout: TimeoutPolicy = attrs.field(factory=TimeoutPolicy)
    budget: BudgetPolicy = attrs.field(factory=BudgetPolicy)
    key: str | None = attrs.field(default=None, validator=key_choice)
    llm: bool = attrs.field(default=False, validator=boolean)
    costs: bool = attrs.field(default=True, validator=boolean)

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

        A sub-policy given as an instance replaces the preset's whole:
        ``retry=RetryPolicy(max_attempts=3)`` is exactly that ``RetryPolicy``,
        its defaults included (idempotent methods only: no POST retries, 0.1 s
        to 20 s backoff). A dict changes the fields it names and keeps the
        rest of the preset: ``retry={"max_attempts": 2}`` keeps POST retried.

        Example: ``Policy.for_llm(key="model", retry={"max_attempts": 2})``.
        """
        preset = cls(
            retry=RetryPolicy(
                max_attempts=4,
                base_delay=0.5,
                max_delay=30.0,
                retry_methods=IDEMPOTENT_METHODS | {"POST", "PATCH"},
                retry_after_max=120.0,
            ),
            breaker=BreakerPolicy(
                failure_threshold=5, minimum_calls=20, failure_rate=0.5, recovery_timeout=60.0
            ),
            timeout=TimeoutPolicy(attempt=600.0, deadline=900.0),
            llm=True,
        )
        fields = {f.name for f in attrs.fields(cls)}
        changes: dict[str, Any] = {}
        for name, value in overrides.items():
            if name not in fields:
                msg = (
                    f"Policy.for_llm() got an unknown setting {name!r}; "
                    f"known ones: {', '.join(sorted(fields))}"
                )
                raise TypeError(msg)
            if name in _SECTIONS:
                changes[name] = merge_section(getattr(preset, name), value, name)
            else:
                changes[name] = value
        return attrs.evolve(preset, **changes)


_SECTIONS = ("retry", "breaker", "timeout", "budget")
