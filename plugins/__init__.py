"""seawall's plugin system: the hook markers, specs and the plugin manager.

Plugin authors write ``from seawall import hookimpl`` (re-exported from here).
"""

from __future__ import annotations

import pluggy

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

#: The pluggy project name, and the entry-point group plugins register under.
PROJECT_NAME = "seawall"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
