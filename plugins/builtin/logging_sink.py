"""The built-in escalation sink: incidents become log records.

Logged under ``seawall.escalation`` at the level of the incident's severity
(LOW info, MEDIUM warning, HIGH error, CRITICAL critical), with the incident's
fields in ``extra`` for structured log handlers. Block it with
``Seawall(blocked=["seawall.builtin.logging_sink"])``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from seawall.outcome import Severity
from seawall.plugins import hookimpl

if TYPE_CHECKING:
    from seawall.escalation import Incident

__all__ = ["LEVELS", "seawall_escalate"]

log = logging.getLogger("seawall.escalation")

#: Log level for each severity.
LEVELS = {
    Severity.LOW: logging.INFO,
    Severity.MEDIUM: logging.WARNING,
    Severity.HIGH: logging.ERROR,
    Severity.CRITICAL: logging.CRITICAL,
}


@hookimpl(trylast=True)
def seawall_escalate(incident: Incident) -> None:
    """Log the incident; its text is already redacted."""
    log.log(
        LEVELS.get(incident.severity, logging.ERROR),
        "%s",
        incident.summary(),
        extra={"seawall_incident": incident.as_dict()},
    )
