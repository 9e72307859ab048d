"""Registering the built-ins: checked once a process, the same impls as pluggy finds, and
a fresh instance of each stateful built-in for every ``Seawall``."""

from __future__ import annotations

import importlib
from typing import Any

import pluggy
import pytest

import seawall
from seawall import Category, Classification
from seawall.plugins import PROJECT_NAME, hookspecs
from seawall.plugins.builtin import BUILTIN_MODULES
from seawall.plugins.builtin.llm import LLMPlugin
from seawall.plugins.manager import PluginError, SeawallPluginManager, make_manager

NAMES = [f"seawall.builtin.{name}" for name in BUILTIN_MODULES]


def _impls(pm: pluggy.PluginManager, plugin: object) -> set[tuple[str, Any, bool, bool]]:
    """Each of ``plugin``'s registered impls: hook, function, tryfirst, trylast."""
    return {
        (caller.name, impl.function, impl.tryfirst, impl.trylast)
        for caller in pm.get_hookcallers(plugin) or ()
        for impl in caller.get_hookimpls()
        if impl.plugin is plugin
    }


@pytest.mark.parametrize("module_name", BUILTIN_MODULES)
def test_a_builtin_registers_what_pluggy_alone_finds(module_name: str) -> None:
    """Skipping a built-in's attributes not named ``seawall_*`` loses no implementation:
    pluggy's own parsing of every attribute finds the same impls."""
    module = importlib.import_module(f"seawall.plugins.builtin.{module_name}")
    factory = getattr(module, "plugin", None)
    plugin = factory() if callable(factory) else module
    plain = pluggy.PluginManager(PROJECT_NAME)
    plain.add_hookspecs(hookspecs)
    plain.register(plugin, name="plain")
    ours = SeawallPluginManager()
    ours.register_builtin(plugin, f"seawall.builtin.{module_name}")
    found = _impls(plain, plugin)
    assert found
    assert _impls(ours, plugin) == found
    assert all(hook.startswith("seawall_") for hook, *_ in found)


def test_every_seawall_has_its_own_stateful_builtins() -> None:
    """Two ``Seawall``s share no built-in instance: patterns and counts stay apart."""
    one, two = seawall.Seawall(entrypoints=False), seawall.Seawall(entrypoints=False)
    for name in ("seawall.builtin.patterns", "seawall.builtin.exceptions", "seawall.builtin.llm"):
        assert one.plugin_manager.get_plugin(name) is not two.plugin_manager.get_plugin(name)
    one.add_pattern("out of stock", Classification(category=Category.CLIENT))
    one.plugin_manager.get_plugin("seawall.builtin.exceptions").classify(TimeoutError())
    assert one.classifier_stats()["user_patterns"] == 1
    assert two.classifier_stats()["user_patterns"] == 0
    assert two.classifier_stats()["cache_misses"] == 0


def test_builtins_are_listed_as_before() -> None:
    """Every built-in is registered under its name, in priority order, with its hooks."""
    pm = make_manager(entrypoints=False)
    again = make_manager(entrypoints=False)
    builtin = [name for name, _ in pm.list_name_plugin() if name.startswith("seawall.builtin.")]
    assert builtin == NAMES
    assert pm.list_plugins(include_builtin=True) == again.list_plugins(include_builtin=True)


async def _async_backoff(attempt: int) -> float:
    return 0.0


def test_a_replaced_builtin_module_hook_is_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A built-in that fitted once is checked again when its hook function is replaced:
    the same ``PluginError`` as for any plugin, on every construction."""
    from seawall.plugins.builtin import backoff

    seawall.Seawall(entrypoints=False)
    monkeypatch.setattr(backoff, "seawall_backoff", seawall.hookimpl(trylast=True)(_async_backoff))
    for _ in range(2):
        with pytest.raises(PluginError, match=r"^plugin 'seawall.builtin.backoff' implements "):
            seawall.Seawall(entrypoints=False)
    monkeypatch.undo()
    assert "seawall.builtin.backoff" in {
        info.name for info in seawall.Seawall(entrypoints=False).list_plugins(include_builtin=True)
    }


def test_a_replaced_builtin_method_is_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same for a built-in that is an instance: a method replaced on its class."""

    def seawall_classify(self: LLMPlugin, outcome: object, nonsense: int) -> None:
        return None

    seawall.Seawall(entrypoints=False)
    monkeypatch.setattr(
        LLMPlugin, "seawall_classify", seawall.hookimpl(trylast=True)(seawall_classify)
    )
    for _ in range(2):
        with pytest.raises(PluginError, match=r"asks for 'nonsense', which seawall does not pass"):
            seawall.Seawall(entrypoints=False)
