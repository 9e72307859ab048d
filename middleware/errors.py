"""seawall's exceptions: one root, each carrying the key and the attempts made.

Raised through the aiohttp middleware, their ``Client*`` twins are used
(``seawall.aiohttp``): they are also ``aiohttp.ClientConnectionError``, so
``except aiohttp.ClientError`` in existing code keeps catching them. This
module does not import aiohttp.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from seawall._checks import show_seconds

__all__ = [
    "AttemptRecord",
    "CircuitOpenError",
    "DeadlineExceededError",
    "RetriesExhaustedError",
    "RetryBudgetExhaustedError",
    "SeawallError",
    "unwrap",
]

#: At most this many exceptions of a chain are looked at by ``unwrap``.
UNWRAP_LIMIT = 32


@attrs.frozen
class AttemptRecord:
    """One attempt of a call, for error messages and ``__notes__``."""

    number: int
    result: str  # "HTTP 503" or "ServerDisconnectedError('...')"
    category: str
    elapsed: float
    delay: float | None = None  # the wait chosen after it, if a retry followed

    def __str__(self) -> str:
        text = f"attempt {self.number}: {self.result} ({self.category}, {self.elapsed:.3f}s)"
        if self.delay is not None:
            text += f", retried after {self.delay:.3f}s"
        return text


class SeawallError(Exception):
    """Base class of every error seawall raises on its own account."""

    def __init__(self, message: str, *, key: str, attempts: Sequence[AttemptRecord] = ()) -> None:
        super().__init__(message)
        self.key = key
        self.attempts: tuple[AttemptRecord, ...] = tuple(attempts)
        for record in self.attempts:
            self.add_note(str(record))


class CircuitOpenError(SeawallError):
    """The breaker for ``key`` is open: no upstream call was made.

    ``retry_after`` is the number of seconds until the breaker lets a probe
    through (0 when it is half-open and its probes are all in flight).
    """

    def __init__(
        self,
        key: str,
        retry_after: float,
        *,
        attempts: Sequence[AttemptRecord] = (),
        message: str | None = None,
    ) -> None:
        if message is None:
            message = (
                f"circuit breaker for {key} is open after repeated failures; "
                f"no request was sent. It lets a probe through in {show_seconds(retry_after)}: "
                "retry after that, serve a fallback, or check the upstream's health"
            )
        super().__init__(message, key=key, attempts=attempts)
        self.retry_after = retry_after


class RetryBudgetExhaustedError(SeawallError):
    """The retry budget of ``key`` is spent: the failure was not retried."""


class DeadlineExceededError(SeawallError):
    """The call's deadline passed, or the next attempt could not fit in it."""


class RetriesExhaustedError(SeawallError):
    """Every attempt the policy allows failed; the last failure is ``__cause__``."""


def unwrap(exc: BaseException | None) -> SeawallError | None:
    """The seawall error inside ``exc``: ``exc`` itself, or the first one down its
    ``__cause__`` chain; ``None`` when there is none.

    SDKs wrap transport errors explicitly (``raise ... from err``): through
    ``httpx-aiohttp`` a ``CircuitOpenError`` reaches you as
    ``openai.APITimeoutError`` (or ``anthropic.APITimeoutError``) whose cause is
    an ``httpx.ConnectTimeout`` whose cause is seawall's error.

    Only ``__cause__`` is followed, never ``__context__``: an exception raised
    while a seawall error was being handled, without ``from`` (a ``KeyError``
    in the ``except CircuitOpenError:`` fallback), is a new error of the code
    that raised it, not seawall's, and ``raise ... from None`` says so
    explicitly. At most ``UNWRAP_LIMIT`` exceptions are looked at and each
    once, so a cyclic chain ends. Members of an exception group are not
    searched: which one would be "the" error is the caller's choice.
    """
    current = exc
    seen: set[int] = set()
    while current is not None and len(seen) < UNWRAP_LIMIT and id(current) not in seen:
        if isinstance(current, SeawallError):
            return current
        seen.add(id(current))
        current = current.__cause__
    return None
