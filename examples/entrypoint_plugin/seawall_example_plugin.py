"""A seawall plugin in one module: a teapot that is busy is worth one more try.

Installed, it is found through the ``seawall`` entry-point group; no code in
the application has to register it.
"""

from __future__ import annotations

import seawall
from seawall import Category, Classification, Outcome, Severity

#: What this plugin says about an HTTP 418.
TEAPOT_BUSY = Classification(
    category=Category.SERVER,
    severity=Severity.LOW,
    retryable=True,
    max_retries=1,
    reason="HTTP 418: the teapot is busy, try once more",
)


@seawall.hookimpl
def seawall_classify(outcome: Outcome) -> Classification | None:
    """Retry a 418 once; leave everything else to the next classifier."""
    if outcome.status == 418:
        return TEAPOT_BUSY
    return None
