"""The entry-point scan kept between ``Seawall()``s: never stale, never shared state.

Two kinds of ``sys.path`` directory. A fresh one (``tmp_path`` as it is: changed
seconds ago) is racy, so every ``Seawall()`` scans it again. An aged one (its
modification time set an hour back after each change, as a ``site-packages``
installed into long ago looks) lets the scan be kept, so the tests see the cache
answer and see it drop when a distribution is installed or removed. Installing
and removing are real: files on disk that ``importlib.metadata`` reads.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import seawall
from seawall.plugins import discovery
from seawall.plugins.manager import PluginError

from .test_entrypoints import PLUGIN_SOURCE

HOUR_NS = 3600 * 10**9


class Site:
    """A directory on ``sys.path`` that distributions are installed into and removed from."""

    def __init__(self, root: Path, *, aged: bool) -> None:
        self.root = root
        self.aged = aged
        self.modules: list[str] = []
        self._ages = 0

    def install(self, dist: str, entry: str, module: str, source: str = PLUGIN_SOURCE) -> None:
        (self.root / f"{module}.py").write_text(textwrap.dedent(source))
        info = self._info(dist)
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[seawall]\n{entry} = {module}\n")
        self.modules.append(module)
        self._age()

    def remove(self, dist: str) -> None:
        shutil.rmtree(self._info(dist))
        self._age()

    def _info(self, dist: str) -> Path:
        return self.root / f"{dist.replace('-', '_')}-0.1.dist-info"

    def _age(self) -> None:
        """Set the directory's modification time an hour back, a new value each time."""
        if self.aged:
            self._ages += 1
            stamp = time.time_ns() - HOUR_NS - self._ages
            os.utime(self.root, ns=(stamp, stamp))


@pytest.fixture(params=["fresh", "aged"])
def site(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Site]:
    """``tmp_path`` as the only ``sys.path`` entry (so the test decides every directory's
    age), after one ``Seawall()`` imported all that a ``Seawall`` needs. No bytecode is
    written, so importing a plugin does not add ``__pycache__`` to the directory."""
    seawall.Seawall(entrypoints=False)
    monkeypatch.delenv("SEAWALL_LOAD_PLUGINS", raising=False)
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    made = Site(tmp_path, aged=request.param == "aged")
    yield made
    for module in made.modules:
        sys.modules.pop(module, None)


def _names(sw: seawall.Seawall) -> set[str]:
    return {info.name for info in sw.list_plugins()}


def test_a_distribution_installed_after_a_seawall_is_found_by_the_next(site: Site) -> None:
    """Installing a plugin between two ``Seawall()``s: the second has it."""
    site.install("seawall-fake", "fake", "seawall_fake")
    assert _names(seawall.Seawall()) == {"fake"}
    site.install("seawall-other", "other", "seawall_other")
    assert _names(seawall.Seawall()) == {"fake", "other"}


def test_a_removed_distribution_is_no_longer_loaded(site: Site) -> None:
    """Uninstalling a plugin between two ``Seawall()``s: the second does not load it,
    although its module is still imported."""
    site.install("seawall-fake", "fake", "seawall_fake")
    site.install("seawall-other", "other", "seawall_other")
    assert _names(seawall.Seawall()) == {"fake", "other"}
    site.remove("seawall-other")
    assert "seawall_other" in sys.modules
    assert _names(seawall.Seawall()) == {"fake"}


def test_an_unchanged_aged_path_is_scanned_once(site: Site) -> None:
    """With nothing installed or removed, later scans come from the cache (aged
    directories), or every one scans again (a fresh, racy directory)."""
    site.install("seawall-fake", "fake", "seawall_fake")
    first = discovery.entry_points()
    before = discovery.cache_info()
    for _ in range(3):
        assert discovery.entry_points() == first
    after = discovery.cache_info()
    scans = after["scans"] - before["scans"]
    hits = after["hits"] - before["hits"]
    assert (scans, hits) == ((0, 3) if site.aged else (3, 0))
    [found] = first
    assert found.entry_point.name == "fake"
    assert (found.dist_name, found.version) == ("seawall-fake", "0.1")


def test_a_changed_sys_path_is_scanned_again(site: Site, tmp_path_factory) -> None:
    """A directory added to ``sys.path`` is scanned, even when every directory is aged."""
    site.install("seawall-fake", "fake", "seawall_fake")
    assert _names(seawall.Seawall()) == {"fake"}
    other = Site(tmp_path_factory.mktemp("other"), aged=True)
    other.install("seawall-other", "other", "seawall_other")
    sys.path.append(str(other.root))  # sys.path is the fixture's list, restored after
    try:
        assert _names(seawall.Seawall()) == {"fake", "other"}
    finally:
        sys.modules.pop("seawall_other", None)


@pytest.mark.parametrize(
    ("source", "cause"),
    [
        ("import no_such_module_here\n", ModuleNotFoundError),
        ("import sys\nsys.exit(3)\n", SystemExit),
    ],
)
def test_a_broken_entry_point_fails_the_same_way_every_time(
    site: Site, source: str, cause: type[BaseException]
) -> None:
    """A plugin that cannot load raises the same ``PluginError`` on every construction,
    the cached scan notwithstanding: what is kept is what was found, not what was loaded."""
    site.install("seawall-broken", "broken", "seawall_broken", source)
    messages = set()
    for _ in range(3):
        with pytest.raises(PluginError) as info:
            seawall.Seawall()
        assert type(info.value.__cause__) is cause
        messages.add(str(info.value))
    [message] = messages
    assert message.startswith("could not load seawall plugin 'broken' from seawall-broken 0.1: ")
    assert message.endswith("upgrade or uninstall it, or leave it out of SEAWALL_LOAD_PLUGINS")


def test_a_fixed_entry_point_loads_once_the_module_is_fixed(site: Site) -> None:
    """A broken plugin's module fixed in place (its distribution unchanged) loads next time."""
    site.install("seawall-broken", "broken", "seawall_broken", "import no_such_module_here\n")
    with pytest.raises(PluginError):
        seawall.Seawall()
    (site.root / "seawall_broken.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    assert _names(seawall.Seawall()) == {"broken"}


def test_the_load_filter_is_read_on_every_construction(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``SEAWALL_LOAD_PLUGINS`` changed between two ``Seawall()``s applies to the second."""
    site.install("seawall-fake", "fake", "seawall_fake")
    site.install("seawall-other", "other", "seawall_other")
    assert _names(seawall.Seawall()) == {"fake", "other"}
    monkeypatch.setenv("SEAWALL_LOAD_PLUGINS", "other")
    assert _names(seawall.Seawall()) == {"other"}


def test_path_key_changes_with_a_path_entry_that_appears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``sys.path`` entry that does not exist yet has no stamp; once created, it has one."""
    missing = tmp_path / "later"
    monkeypatch.setattr(sys, "path", [*sys.path, str(missing)])
    before, _ = discovery.path_key()
    missing.mkdir()
    after, _ = discovery.path_key()
    assert before != after
