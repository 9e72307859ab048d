"""What a plugin manager reports about its plugins: ``list_plugins`` and the built-in
classifiers' counts (the queries of ``SeawallPluginManager``, beside its registering)."""

from __future__ import annotations

from typing import Any

import attrs
import pluggy

from seawall.plugins.builtin.patterns import PatternClassifier
from seawall.plugins.hooks import BUILTIN_PREFIX

__all__ = ["ManagerReports", "PluginInfo"]

#: The built-in plugins whose counts ``classifier_stats`` reports.
_CLASSIFIERS = ("seawall.builtin.exceptions", "seawall.builtin.patterns")


@attrs.frozen
class PluginInfo:
    """One registered plugin, as ``seawall plugins`` lists it."""

    name: str
    hooks: tuple[str, ...]
    builtin: bool
    distribution: str | None = None
    version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class ManagerReports(pluggy.PluginManager):
    """The queries of ``SeawallPluginManager`` (``seawall.plugins.manager``)."""

    #: plugin name -> (distribution, version), for entry-point plugins.
    distributions: dict[str, tuple[str, str]]

    def patterns(self) -> PatternClassifier:
        """The built-in pattern classifier (``add_pattern`` adds to it)."""
        plugin = self.get_plugin("seawall.builtin.patterns")
        if not isinstance(plugin, PatternClassifier):
            msg = (
                "add_pattern needs the built-in plugin 'seawall.builtin.patterns', "
                "which is blocked; unblock it or classify messages in a plugin of your own"
            )
            raise RuntimeError(msg)
        return plugin

    def classifier_stats(self) -> dict[str, Any]:
        """Counts from the built-in exception classifier and the user's patterns.

        ``patterns_loaded``: the message patterns asked, built-in and the user's.
        Empty when both plugins are blocked.
        """
        stats: dict[str, Any] = {}
        for plugin in self._classifiers():
            stats.update(plugin.snapshot())
        if stats:
            stats["patterns_loaded"] = stats.get("builtin_patterns", 0) + stats.get(
                "user_patterns", 0
            )
        return stats

    def reset_classifier_stats(self) -> None:
        """Zero the classifiers' counts (patterns and caches are kept)."""
        for plugin in self._classifiers():
            plugin.reset()

    def _classifiers(self) -> list[Any]:
        found = (self.get_plugin(name) for name in _CLASSIFIERS)
        return [plugin for plugin in found if plugin is not None]

    def list_plugins(self, *, include_builtin: bool = False) -> list[PluginInfo]:
        """Every registered plugin with the hooks it implements, sorted by name."""
        infos = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue  # blocked
            builtin = name.startswith(BUILTIN_PREFIX)
            if builtin and not include_builtin:
                continue
            callers = self.get_hookcallers(plugin) or []
            dist, version = self.distributions.get(name, (None, None))
            infos.append(
                PluginInfo(
                    name=name,
                    hooks=tuple(sorted(c.name for c in callers)),
                    builtin=builtin,
                    distribution=dist,
                    version=version,
                )
            )
        return sorted(infos, key=lambda info: (not info.builtin, info.name))
