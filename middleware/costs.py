"""What LLM calls cost: tokens and US dollars per key and model, and what failures cost.

Reading usage is ``seawall.llm.usage``, pricing ``seawall.llm.prices`` (both
re-exported here, their old home); this module keeps the totals and the report.
``model_price("gpt-4o")`` says what a model's tokens cost.

Prices come from the maintained price database ``genai-prices`` (extra
``llm``; imported lazily, in ``seawall.llm.prices`` only), else from a short
built-in table of current OpenAI and Anthropic models. Usage is read from successful JSON
answers of LLM routes (OpenAI chat completions and responses, Anthropic
messages; cache tokens included) and, for streamed (SSE) answers, from the
final usage chunk as it streams past; a stream left before its end is a call all the
same (``stream_usage``). ``sw.costs()`` returns ``report(states, tracker)``.

Input tokens are all prompt tokens, cached ones included (for Anthropic:
``input_tokens`` plus the cache reads and writes, as genai-prices counts
them); ``cache_read_tokens``/``cache_write_tokens`` say how many of them
were cached.
"""

from __future__ import annotations

import decimal
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING

import attrs

from seawall.events import CallCost
from seawall.llm import LLM_HOSTS
from seawall.llm.prices import ModelPrice, model_price, price
from seawall.llm.stream import UNKNOWN_MODEL, StreamUsage
from seawall.llm.usage import (
    LONG_MODEL,
    MAX_TOKENS,
    MODEL_NAME_MAX,
    SUCCESS_BODY_LIMIT,
    Usage,
    parse_usage,
    usage_from_json,
)
from seawall.llm.usage import (
    _decompress as _decompress,  # the tests reach it here, its old home
)
from seawall.redact import exception_repr, redact_text
from seawall.reports import MONEY, AvoidedCalls, CostReport, KeyCosts, ModelCosts
from seawall.stats import KeyStats

if TYPE_CHECKING:
    from seawall.plugins.hooks import Hooks
    from seawall.state import KeyState

__all__ = [
    "MAX_COST_KEYS",
    "MAX_MODELS_PER_KEY",
    "MAX_TOKENS",
    "OTHER",
    "SUCCESS_BODY_LIMIT",
    "UNKNOWN_MODEL",
    "CostTracker",
    "ModelCost",
    "ModelPrice",
    "StreamUsage",
    "Usage",
    "model_price",
    "parse_usage",
    "price",
    "account",
    "report",
    "stream_usage",
    "usage_from_json",
]

log = logging.getLogger("seawall.costs")


#: Most model entries kept per key: model names come from the upstream's answers,
#: so a hostile upstream could name a new model in every answer. Calls of further
#: models (and of names longer than ``MODEL_NAME_MAX``) are added up under ``OTHER``.
MAX_MODELS_PER_KEY = 50

#: Most keys with cost totals; calls of further keys are added up under ``OTHER``.
MAX_COST_KEYS = 10_000

#: The bucket of calls past ``MAX_MODELS_PER_KEY`` or ``MAX_COST_KEYS``.
OTHER = LONG_MODEL


@attrs.define
class ModelCost:
    """Totals for one key and model."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: Decimal = attrs.field(factory=Decimal)
    #: Calls whose cost is unknown (in ``calls``, not in ``cost_usd``): a model without a
    #: price, or a stream left before its usage came (``seawall.llm.stream``).
    unpriced_calls: int = 0

    def add(self, usage: Usage, cost: Decimal | None) -> None:
        self.calls += 1
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cache_read_tokens += usage.cache_read_tokens
        self.cache_write_tokens += usage.cache_write_tokens
        if cost is None:
            self.unpriced_calls += 1
        else:
            with decimal.localcontext(MONEY):  # a total every caller shares: not theirs
                self.cost_usd += cost


class CostTracker:
    """Accumulates priced usage per key and model for one ``Seawall``."""

    def __init__(self) -> None:
        self.by_key: dict[str, dict[str, ModelCost]] = {}
        #: Calls whose cost could not be counted (``account`` logged the first).
        self.faults = 0
        #: Held while a call is added and while ``report`` copies the tables: a copy is
        #: not atomic (a garbage collection during it can run Python code and let
        #: another thread in), so a sync transport's thread could change them mid-copy.
        self.lock = threading.Lock()

    def record(self, key: str, usage: Usage, priced: bool = True) -> Decimal | None:
        """Price ``usage`` and add it to ``key``'s totals; return the call's cost.

        With ``priced=False`` the call's cost is unknown (a stream left before
        its usage came): an unpriced call, whatever the model. Past
        ``MAX_COST_KEYS`` keys or ``MAX_MODELS_PER_KEY`` models of a key, the call
        is added up under ``OTHER`` (priced as its own model all the same).
        """
        cost = price(usage) if priced else None  # not under the lock: the slow part
        with self.lock:
            by_key = self.by_key
            models = by_key.get(key)
            if models is None:
                if len(by_key) >= MAX_COST_KEYS:
                    key = OTHER
                models = by_key.setdefault(key, {})
            name = usage.model
            entry = models.get(name)
            if entry is None:
                if len(name) > MODEL_NAME_MAX or len(models) >= MAX_MODELS_PER_KEY:
                    name = OTHER
                entry = models.get(name)
                if entry is None:
                    entry = models[name] = ModelCost()
            entry.add(usage, cost)
        return cost

    def reset(self) -> None:
        with self.lock:
            self.by_key.clear()
        self.faults = 0


def report(states: Mapping[str, KeyState], tracker: CostTracker) -> CostReport:
    """``sw.costs()``: per key, what the calls cost and what failures cost.

    Per key: ``models`` (calls, tokens, ``cost_usd`` as ``Decimal``),
    ``cost_usd``, and the price of failures: ``failed_attempts``,
    ``waited_seconds`` (backoff and cooldown waits) and ``avoided_calls`` (by
    the breaker and the cooldown, which never reached the upstream). Keys are
    those with priced calls and those of LLM routes. Types: ``seawall.reports``.
    """
    # Copies first: the sync transports' threads add keys and models while this runs.
    # The cost tables under the tracker's lock, each entry's figures too (the copy and
    # ``ModelCost.add`` would otherwise interleave); the states' mapping as a whole.
    # The registry's view is a MappingProxyType: its copy() is the dict's own, made in
    # one C call; dict(view) walked it key by key.
    states = states.copy() if isinstance(states, MappingProxyType | dict) else dict(states)
    with tracker.lock:
        by_key = {
            key: {name: ModelCosts(**attrs.asdict(m)) for name, m in models.items()}
            for key, models in tracker.by_key.items()
        }
    keys: dict[str, KeyCosts] = {}
    for key in [*states, *(k for k in by_key if k not in states)]:
        models = by_key.get(key, {})
        state = states.get(key)
        host = key.split("://", 1)[-1].split(":", 1)[0]
        is_llm = state is not None and state.policy.llm
        if not models and not is_llm and host not in LLM_HOSTS:
            continue
        stats = state.stats if state is not None else KeyStats()
        keys[key] = KeyCosts(
            models=models,
            cost_usd=_total(m.cost_usd for m in models.values()),
            calls=sum(m.calls for m in models.values()),
            failed_attempts=max(0, stats.attempts - stats.successes),
            waited_seconds=stats.waited,
            avoided_calls=AvoidedCalls(
                breaker=stats.rejections.get("breaker", 0),
                cooldown=stats.rejections.get("cooldown", 0),
            ),
        )
    return CostReport.of(keys)


def _total(amounts: Iterable[Decimal]) -> Decimal:
    with decimal.localcontext(MONEY):
        return sum(amounts, Decimal(0))


def account(
    tracker: CostTracker,
    hooks: Hooks,
    key: str,
    url: str,
    usage: Usage,
    *,
    streamed: bool = False,
    priced: bool = True,
) -> None:
    """Price and record one successful call; tell ``seawall_event`` observers its cost.

    ``priced=False``: a call whose cost is unknown (its ``cost`` event has none).

    Never raises: counting what a call cost must not turn its successful answer
    into an error (the caller's answer is handed over as it is; the first
    failure of a tracker is logged as a warning, the others at debug level).
    """
    try:
        _account(tracker, hooks, key, url, usage, streamed, priced)
    except Exception as exc:
        tracker.faults += 1
        level = logging.WARNING if tracker.faults == 1 else logging.DEBUG
        log.log(
            level,
            "seawall: could not count the cost of an answer from %s (%s); the answer is "
            "handed over as it is and left out of sw.costs(). Please report this as a "
            "seawall bug (logged once)",
            url,
            redact_text(exception_repr(exc)),
        )


def _account(
    tracker: CostTracker,
    hooks: Hooks,
    key: str,
    url: str,
    usage: Usage,
    streamed: bool,
    priced: bool,
) -> None:
    cost = tracker.record(key, usage, priced)
    if hooks.has("seawall_event"):
        event = CallCost(
            key=key,
            timestamp=time.time(),
            url=url,
            model=usage.model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cost_usd=cost,
            streamed=streamed,
        )
        hooks.each("seawall_event", event=event)


def stream_usage(
    tracker: CostTracker, hooks: Hooks, key: str, url: str, key_by_model: bool
) -> StreamUsage:
    """The tap that counts one streamed answer once, however the stream ends.

    Read whole: priced from its usage. Left before its usage came (closed,
    released, broken, dropped): a call of the model seen so far, priced from
    the counts seen so far if any (a lower bound), else an unpriced call. A
    stream that named no model is counted under the model of the request when
    ``key_by_model`` (``Policy(key="model")``: ``key`` ends ``#<model>``), else
    under ``UNKNOWN_MODEL``.
    """

    def done(usage: Usage) -> None:
        account(tracker, hooks, key, url, usage, streamed=True)

    def unpriced(usage: Usage) -> None:
        account(tracker, hooks, key, url, usage, streamed=True, priced=False)

    # A model in a key is one `model_from_json` took, and it never holds a "#".
    requested = key.rpartition("#")[2] if key_by_model and "#" in key else None
    return StreamUsage(done, unpriced, requested or None)
