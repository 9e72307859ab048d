"""Plugins that do not fit the hooks are refused with a message naming the plugin and the fix."""

from __future__ import annotations

from typing import Any

import pytest

import seawall
from seawall.plugins.manager import NoHooksError, PluginError

from ._helpers import policy

PREFIX = "tests.test_plugin_messages."


def _sw(*plugins: object) -> seawall.Seawall:
    return seawall.Seawall(policy(max_attempts=1), entrypoints=False, plugins=list(plugins))


class Typo:
    @seawall.hookimpl
    def seawall_clasify(self, outcome: seawall.Outcome) -> None:
        return None


class WrongArgs:
    @seawall.hookimpl
    def seawall_classify(self, outcome: seawall.Outcome, response: Any) -> None:
        return None


class Unmarked:
    """Hook-named methods, but no @seawall.hookimpl: pluggy would register nothing."""

    def seawall_classify(self, outcome: seawall.Outcome) -> None:
        return None


class Good:
    @seawall.hookimpl
    def seawall_event(self, event: Any) -> None:
        return None


def test_a_misspelt_hook_via_register_is_refused_and_names_the_closest_hook() -> None:
    """sw.register() used to accept a misspelt hook silently (only construction checked)."""
    sw = _sw()
    before = sw.list_plugins()
    with pytest.raises(PluginError) as info:
        sw.register(Typo())
    assert str(info.value).startswith(
        f"plugin '{PREFIX}Typo' implements seawall_clasify, which is not a seawall hook; "
        "did you mean seawall_classify?"
    )
    assert sw.list_plugins() == before  # nothing half-registered


def test_a_name_far_from_every_hook_lists_them_all() -> None:
    class Odd:
        @seawall.hookimpl
        def helper(self) -> None:
            return None

    with pytest.raises(PluginError) as info:
        _sw(Odd())
    text = str(info.value)
    assert "did you mean" not in text
    assert "rename it to one of seawall_backoff, seawall_classify" in text
    assert "optionalhook=True" in text


@pytest.mark.parametrize("how", ["plugins", "register"])
def test_arguments_the_hook_does_not_pass_are_named_with_the_ones_it_does(how: str) -> None:
    """Was pluggy's raw PluginValidationError, naming the plugin by its repr."""
    add = _sw if how == "plugins" else _sw().register
    with pytest.raises(PluginError) as info:
        add(WrongArgs())
    assert str(info.value) == (
        f"plugin '{PREFIX}WrongArgs': seawall_classify(outcome, response) asks for "
        "'response', which seawall does not pass; it passes outcome: "
        "take any of these, by name, in any order"
    )


@pytest.mark.parametrize("how", ["plugins", "register"])
def test_an_object_without_any_hookimpl_is_refused(how: str) -> None:
    """Was accepted and did nothing: the classifier the user wrote never ran."""
    add = _sw if how == "plugins" else _sw().register
    with pytest.raises(NoHooksError) as info:
        add(Unmarked())
    assert str(info.value) == (
        f"plugin '{PREFIX}Unmarked' implements no seawall hook: mark its hook functions "
        "with @seawall.hookimpl (a seawall_* function without it is ignored)"
    )


def test_a_class_instead_of_an_instance_is_refused() -> None:
    with pytest.raises(PluginError, match=r"is a class; register an instance of it \(Good\(\)\)"):
        _sw(Good)


def test_a_good_plugin_and_an_optional_unknown_hook_still_register() -> None:
    class Later:
        @seawall.hookimpl(optionalhook=True)
        def seawall_future_hook(self) -> None:
            return None

    sw = _sw(Good(), Later())
    names = {info.name: info.hooks for info in sw.list_plugins()}
    assert names[f"{PREFIX}Good"] == ("seawall_event",)
    assert any(name.endswith(".<locals>.Later") for name in names)
