"""The built-in backoff plugin: the policy's strategy and jitter (``seawall.backoff``)."""

from __future__ import annotations

from seawall.backoff import ceiling, delay, jittered, seed
from seawall.plugins import hookimpl
from seawall.policy import RetryPolicy

__all__ = ["ceiling", "jittered", "seawall_backoff", "seed"]


@hookimpl(trylast=True)
def seawall_backoff(attempt: int, policy: RetryPolicy) -> float | None:
    """The policy's strategy and jitter: always an answer, so it runs last."""
    return delay(attempt, policy)
