"""seawall's exceptions: one root, each carrying the key and the attempts made.

Raised through the aiohttp middleware, their ``Client*`` twins are used
(``seawall.aiohttp``): they are also ``aiohttp.ClientConnectionError``, so
``except aiohttp.ClientError`` in existing code keeps catching them. This
module does not import aiohttp.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

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
                f"no request was sent. It lets a probe through in {retry_after:.1f}s: "
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
    """The seawall error inside ``exc``: ``exc`` itself, or the first one in its
    ``__cause__``/``__context__`` chain; ``None`` when there is none.

    SDKs wrap transport errors: through ``httpx-aiohttp`` a ``CircuitOpenError``
    reaches you as ``openai.APITimeoutError`` (or ``anthropic.APITimeoutError``)
    whose cause is an ``httpx.ConnectTimeout`` whose cause is seawall's error.
    ``__cause__`` is followed before ``__context__``, also where a context was
    suppressed (``raise ... from None`` hides it from tracebacks, not from
    Python). At most ``UNWRAP_LIMIT`` exceptions are looked at and each once,
    so a cyclic chain ends. Members of an exception group are not searched:
    which one would be "the" error is the caller's choice.
    """
    pending: list[BaseException] = [] if exc is None else [exc]
    seen: set[int] = set()
    while pending and len(seen) < UNWRAP_LIMIT:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, SeawallError):
            return current
        # Popped from the end: the cause is looked at before the context.
        for linked in (current.__context__, current.__cause__):
            if linked is not None and id(linked) not in seen:
                pending.append(linked)
    return None
