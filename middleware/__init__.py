"""seawall: resilience middleware for the outbound HTTP calls of asyncio services.

::

    sw = seawall.Seawall()
    async with aiohttp.ClientSession(middlewares=[sw.middleware()]) as session:
        async with session.get("https://api.example.com/v1/things") as resp:
            ...
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from seawall import testing
from seawall.breaker import BreakerState
from seawall.config import ConfigError
from seawall.context import context
from seawall.deadline import deadline
from seawall.default import configure, default_seawall, retry
from seawall.engine import Seawall
from seawall.errors import (
    CircuitOpenError,
    DeadlineExceededError,
    RetriesExhaustedError,
    RetryBudgetExhaustedError,
    SeawallError,
    unwrap,
)
from seawall.escalation import EscalationPolicy, Incident
from seawall.outcome import Category, Classification, Outcome, Severity
from seawall.plugins import hookimpl, hookspec
from seawall.policy import BreakerPolicy, BudgetPolicy, Policy, RetryPolicy, TimeoutPolicy

try:
    __version__ = version("seawall")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

__all__ = [
    "BreakerPolicy",
    "BreakerState",
    "BudgetPolicy",
    "Category",
    "CircuitOpenError",
    "Classification",
    "ConfigError",
    "DeadlineExceededError",
    "EscalationPolicy",
    "Incident",
    "Outcome",
    "Policy",
    "RetriesExhaustedError",
    "RetryBudgetExhaustedError",
    "RetryPolicy",
    "Seawall",
    "SeawallError",
    "Severity",
    "TimeoutPolicy",
    "__version__",
    "configure",
    "context",
    "deadline",
    "default_seawall",
    "hookimpl",
    "hookspec",
    "retry",
    "testing",
    "unwrap",
]
