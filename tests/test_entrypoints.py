"""Entry-point plugins: discovery, the SEAWALL_LOAD_PLUGINS filter, load errors, a real install."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import seawall
from seawall.plugins.manager import PluginError

from ._helpers import pip_install_target
from .conftest import status

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "entrypoint_plugin"

PLUGIN_SOURCE = """
import seawall

@seawall.hookimpl
def seawall_classify(outcome):
    if outcome.status == 418:
        return seawall.Classification(
            category=seawall.Category.SERVER, retryable=True, reason="fake: teapot"
        )
    return None
"""

Install = Callable[..., None]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """Write throwaway distributions into tmp_path and put it on sys.path."""
    modules: list[str] = []
    monkeypatch.delenv("SEAWALL_LOAD_PLUGINS", raising=False)

    def make(dist: str, entry: str, module: str, source: str = PLUGIN_SOURCE) -> None:
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[seawall]\n{entry} = {module}\n")
        modules.append(module)

    monkeypatch.syspath_prepend(str(tmp_path))
    yield make
    for module in modules:
        sys.modules.pop(module, None)


def _names(sw: seawall.Seawall) -> list[str]:
    return [info.name for info in sw.list_plugins()]


def test_an_installed_plugin_is_discovered(install: Install) -> None:
    """A distribution with a [seawall] entry point is registered under the entry point's name."""
    install("seawall-fake", "fake", "seawall_fake")
    sw = seawall.Seawall()
    [info] = [i for i in sw.list_plugins() if i.name == "fake"]
    assert info.distribution == "seawall-fake"
    assert info.version == "0.1"
    assert info.hooks == ("seawall_classify",)
    assert not info.builtin


async def test_a_discovered_plugin_takes_part(install: Install, upstream, make_session) -> None:
    """The discovered classifier is used: a 418 is retried."""
    install("seawall-fake", "fake", "seawall_fake")
    up, server = upstream
    up.then(status(418))
    sw = seawall.Seawall()
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 200
    assert up.hits == 2


def test_entrypoints_false_loads_nothing(install: Install) -> None:
    """Seawall(entrypoints=False) ignores installed plugins."""
    install("seawall-fake", "fake", "seawall_fake")
    assert "fake" not in _names(seawall.Seawall(entrypoints=False))


@pytest.mark.parametrize(
    ("value", "loaded"),
    [
        (None, {"fake", "other"}),
        ("", set()),
        ("fake", {"fake"}),
        ("seawall-other", {"other"}),
        (" fake , seawall-other ", {"fake", "other"}),
        ("nothing-like-it", set()),
    ],
)
def test_load_filter(install: Install, monkeypatch: pytest.MonkeyPatch, value, loaded) -> None:
    """SEAWALL_LOAD_PLUGINS: unset loads all, empty none, a list only those entry/dist names."""
    install("seawall-fake", "fake", "seawall_fake")
    install("seawall-other", "other", "seawall_other")
    if value is not None:
        monkeypatch.setenv("SEAWALL_LOAD_PLUGINS", value)
    assert set(_names(seawall.Seawall())) & {"fake", "other"} == loaded


def test_a_broken_plugin_fails_with_a_helpful_message(install: Install) -> None:
    """A plugin that cannot be imported names itself, its distribution, the error and the fix."""
    install("seawall-broken", "broken", "seawall_broken", "import no_such_module_here\n")
    with pytest.raises(PluginError) as info:
        seawall.Seawall()
    text = str(info.value)
    assert text.startswith("could not load seawall plugin 'broken' from seawall-broken 0.1: ")
    assert "ModuleNotFoundError" in text
    assert "no_such_module_here" in text
    assert text.endswith("upgrade or uninstall it, or leave it out of SEAWALL_LOAD_PLUGINS")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


@pytest.mark.parametrize(
    ("source", "name"),
    [("import sys\nsys.exit(3)\n", "SystemExit"), ("raise KeyError('x')\n", "KeyError")],
)
def test_a_plugin_that_exits_on_import_does_not_end_the_process(
    install: Install, source: str, name: str
) -> None:
    """A module that calls sys.exit() when imported is a plugin that cannot load: a
    PluginError that names it, not a SystemExit that ends the application."""
    install("seawall-exits", "exits", "seawall_exits", source)
    with pytest.raises(PluginError) as info:
        seawall.Seawall()
    assert str(info.value).startswith("could not load seawall plugin 'exits' from seawall-exits")
    assert type(info.value.__cause__).__name__ == name


def test_a_broken_plugin_left_out_by_the_filter(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leaving a broken plugin out of SEAWALL_LOAD_PLUGINS lets seawall start."""
    install("seawall-broken", "broken", "seawall_broken", "import no_such_module_here\n")
    install("seawall-fake", "fake", "seawall_fake")
    monkeypatch.setenv("SEAWALL_LOAD_PLUGINS", "fake")
    assert "fake" in _names(seawall.Seawall())


def test_two_entry_points_naming_one_module_register_it_once(install: Install) -> None:
    """An old entry-point name kept beside a new one must not break every Seawall."""
    install("seawall-new", "new", "seawall_same")
    install("seawall-old", "old", "seawall_same")
    names = set(_names(seawall.Seawall())) & {"new", "old"}
    assert len(names) == 1


def test_a_user_plugin_also_installed_as_an_entry_point_is_registered_once(
    install: Install,
) -> None:
    """Passing in ``plugins=`` a module that is also discovered registers it once."""
    install("seawall-fake", "fake", "seawall_fake")
    import seawall_fake  # type: ignore[import-not-found]

    sw = seawall.Seawall(plugins=[seawall_fake, seawall_fake])
    assert _names(sw).count("fake") == 1
    assert [n for n, _, _ in sw.hooks.impls("seawall_classify")].count("fake") == 1


def test_a_blocked_entry_point_is_skipped(install: Install) -> None:
    """blocked=[name] keeps an installed plugin out."""
    install("seawall-fake", "fake", "seawall_fake")
    assert "fake" not in _names(seawall.Seawall(blocked=["fake"]))


@pytest.mark.slow
def test_example_package_installs_and_is_discovered(tmp_path: Path) -> None:
    """pip-installing examples/entrypoint_plugin makes a fresh interpreter discover it."""
    source = tmp_path / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp_path / "site"
    pip_install_target(source, target)
    script = (
        "import json, seawall\n"
        "print(json.dumps([p.as_dict() for p in seawall.Seawall().list_plugins()]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("SEAWALL_LOAD_PLUGINS", None)
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=180,
    )
    plugins = json.loads(done.stdout)
    [teapot] = [p for p in plugins if p["name"] == "teapot"]
    assert teapot["distribution"] == "seawall-example-plugin"
    assert teapot["version"] == "0.1.0"
    assert teapot["hooks"] == ["seawall_classify"]


UNMARKED_SOURCE = """
def seawall_classify(outcome):
    return None
"""

TYPO_SOURCE = """
import seawall

@seawall.hookimpl
def seawall_clasify(outcome):
    return None
"""


def test_an_entry_point_without_hooks_is_left_out_with_a_warning(
    install: Install, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone else's package must not break every Seawall: warned (log and CLI), not loaded."""
    from seawall.cli import main

    install("seawall-empty", "empty", "seawall_empty", UNMARKED_SOURCE)
    install("seawall-fake", "fake", "seawall_fake")
    with caplog.at_level("WARNING", logger="seawall.plugins"):
        names = _names(seawall.Seawall())
    assert "fake" in names
    assert "empty" not in names
    warning = (
        "plugin 'empty' implements no seawall hook: mark its hook functions with "
        "@seawall.hookimpl (a seawall_* function without it is ignored) "
        "(from seawall-empty 0.1); it is not loaded"
    )
    assert warning in caplog.messages
    assert main(["plugins", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "empty" not in {p["name"] for p in json.loads(out)}
    assert f"warning: {warning}\n" in err


def test_an_entry_point_with_a_misspelt_hook_is_named_in_seawall_plugins(
    install: Install, capsys: pytest.CaptureFixture[str]
) -> None:
    from seawall.cli import main

    install("seawall-typo", "typo", "seawall_typo", TYPO_SOURCE)
    with pytest.raises(PluginError, match=r"^plugin 'typo' implements seawall_clasify"):
        seawall.Seawall()
    assert main(["plugins"]) == 1
    out = capsys.readouterr().out
    assert out.startswith(
        "error: plugin 'typo' implements seawall_clasify, which is not a seawall hook; "
        "did you mean seawall_classify?"
    )
