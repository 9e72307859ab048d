"""Call context: facts about the operation that plugins and policies can use.

``with seawall.context(critical=True):`` marks every request made inside the
block; ``sw.call(..., context={...})`` does the same for one call. Plugins see
the merged mapping in ``outcome.context``. Known keys:

- ``critical`` (bool): MEDIUM severity becomes HIGH and failures escalate.
- ``previous_failures`` (int): failures of this operation before this call;
  once more than two failures are known, backoff delays double (capped).
- ``operation`` (str): a name for logs and incidents.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["context", "current_context"]

_EMPTY: Mapping[str, Any] = {}
_CONTEXT: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "seawall_context", default=_EMPTY
)


def current_context() -> Mapping[str, Any]:
    """The call context in force (empty by default)."""
    return _CONTEXT.get()


@contextlib.contextmanager
def context(**values: Any) -> Iterator[Mapping[str, Any]]:
    """Add ``values`` to the call context for the duration of the block."""
    merged = {**_CONTEXT.get(), **values}
    token = _CONTEXT.set(merged)
    try:
        yield merged
    finally:
        _CONTEXT.reset(token)


def merge(extra: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The context in force with ``extra`` on top."""
    base = _CONTEXT.get()
    if not extra:
        return base
    return {**base, **extra}
