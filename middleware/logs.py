"""seawall's loggers, and the log level of each severity.

Everything seawall logs goes under the ``seawall`` logger hierarchy:

- ``seawall.attempts``: each failed attempt, at its severity's level;
- ``seawall.breaker``: breaker transitions (opening at WARNING, the rest at INFO);
- ``seawall.cooldown``: rate-limit headers a key's answers proved wrong (WARNING);
- ``seawall.escalation``: incidents, from the built-in logging sink;
- ``seawall.plugins``: plugins that raised (once per plugin and hook).

Each record's text is redacted; structured fields ride in ``extra``. The
engine asks ``isEnabledFor`` before building a record, so a disabled logger
costs one cached check.
"""

from __future__ import annotations

import logging

from seawall.outcome import Severity

__all__ = ["LEVELS", "attempts_log", "breaker_log", "cooldown_log", "level_for"]

#: Log level for each severity: LOW info, MEDIUM warning, HIGH error, CRITICAL critical.
LEVELS: dict[Severity, int] = {
    Severity.LOW: logging.INFO,
    Severity.MEDIUM: logging.WARNING,
    Severity.HIGH: logging.ERROR,
    Severity.CRITICAL: logging.CRITICAL,
}

# A library does not decide where logs go: without this handler, Python's
# last-resort handler would print our warnings to stderr in apps that never
# configured logging. Configure the "seawall" logger (or the root) to see them.
logging.getLogger("seawall").addHandler(logging.NullHandler())

attempts_log = logging.getLogger("seawall.attempts")
breaker_log = logging.getLogger("seawall.breaker")
cooldown_log = logging.getLogger("seawall.cooldown")


def level_for(severity: Severity) -> int:
    """The log level of ``severity`` (ERROR for a value outside the table)."""
    return LEVELS.get(severity, logging.ERROR)
