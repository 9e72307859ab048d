"""The shared cooldown of one key: after a 429 with a wait, everyone waits.

When one request learns that the upstream wants a pause (``Retry-After`` on a
429), every other request to the same key waits until that moment instead of
hammering the upstream, or fails fast when its deadline is shorter.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Cooldown"]


class Cooldown:
    """When the key may be called again, on the engine's clock."""

    __slots__ = ("_clock", "until")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.until = 0.0

    def remaining(self) -> float:
        """Seconds left to wait (0 when the key is not cooling down)."""
        left = self.until - self._clock()
        return left if left > 0 else 0.0

    def start(self, seconds: float) -> None:
        """Make every caller wait ``seconds`` from now (a later end wins)."""
        self.until = max(self.until, self._clock() + seconds)
