"""The built-in escalation sink: incidents become log records.

Logged under ``seawall.escalation`` at the level of the incident's severity
(LOW info, MEDIUM warning, HIGH error, CRITICAL critical), with the incident's
fields in ``extra`` for structured log handlers (``seawall_incident``, a dict
of every field, and ``seawall_key``, ``seawall_category``,
``seawall_severity``, ``seawall_count``). Block it with
``Seawall(blocked=["seawall.builtin.logging_sink"])``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from seawall.logs import LEVELS, level_for
from seawall.plugins import hookimpl

if TYPE_CHECKING:
    from seawall.escalation import Incident

__all__ = ["LEVELS", "seawall_escalate"]

log = logging.getLogger("seawall.escalation")


@hookimpl(trylast=True)
def seawall_escalate(incident: Incident) -> None:
    """Log the incident; its text is already redacted."""
    level = level_for(incident.severity)
    if log.isEnabledFor(level):
        extra = {
            "seawall_incident": incident.as_dict(),
            "seawall_key": incident.key,
            "seawall_category": incident.category.value,
            "seawall_severity": incident.severity.name,
            "seawall_count": incident.count,
        }
        log.log(level, "%s", incident.summary(), extra=extra)
