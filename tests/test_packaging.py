"""Packaging: the folder-to-package mapping works for regular and editable installs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ._helpers import pip_install_target

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"middleware": "seawall", "plugins": "seawall.plugins"}

PROBE = (
    "import json, seawall, seawall.plugins, seawall.plugins.builtin, seawall.plugins.manager\n"
    "print(json.dumps({'seawall': seawall.__file__, 'plugins': seawall.plugins.__file__,"
    " 'version': seawall.__version__}))\n"
)


def _packages_on_disk() -> set[str]:
    found = set()
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *relative)))
    return found


def test_every_package_folder_is_listed_in_pyproject() -> None:
    """Package discovery is off, so each folder with an __init__.py must be listed."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"seawall": "middleware", "seawall.plugins": "plugins"}
    assert _packages_on_disk() == set(config["packages"])
    assert "py.typed" in config["package-data"]["seawall"]
    assert (ROOT / "middleware" / "py.typed").exists()


def _probe(python: str, cwd: Path, env: dict[str, str]) -> dict[str, str]:
    import json

    done = subprocess.run(
        [python, "-c", PROBE],
        check=True,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=180,
    )
    result: dict[str, str] = json.loads(done.stdout)
    return result


@pytest.mark.slow
def test_regular_install_imports_from_outside_the_repo(tmp_path: Path) -> None:
    """`pip install .` (into a target dir) gives working `seawall` and `seawall.plugins`."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in FOLDERS:
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    target = tmp_path / "site"
    pip_install_target(source, target)
    assert (target / "seawall" / "py.typed").exists()
    for package in _packages_on_disk():
        assert (target.joinpath(*package.split(".")) / "__init__.py").exists(), package
    assert not (target / "middleware").exists()
    assert not (target / "plugins").exists()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    found = _probe(sys.executable, outside, {**os.environ, "PYTHONPATH": str(target)})
    assert Path(found["seawall"]).is_relative_to(target)
    assert Path(found["plugins"]).is_relative_to(target)
    assert found["version"] == "0.1.0"


@pytest.mark.slow
def test_strict_editable_install_imports_from_outside_the_repo(tmp_path: Path) -> None:
    """The strict editable install `make` performs resolves to the repo's folders."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    found = _probe(sys.executable, tmp_path, env)
    assert Path(found["seawall"]).resolve() == ROOT / "middleware" / "__init__.py"
    assert Path(found["plugins"]).resolve() == ROOT / "plugins" / "__init__.py"


def test_folder_names_are_not_import_names() -> None:
    """From outside the repo, `import middleware` and `import plugins` fail."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for name in FOLDERS:
        done = subprocess.run(
            [sys.executable, "-c", f"import {name}"],
            capture_output=True,
            text=True,
            cwd=ROOT.parent,
            env=env,
            timeout=180,
        )
        assert done.returncode != 0
        assert "ModuleNotFoundError" in done.stderr


#: Extras for working on seawall itself, not for its users: not in the README's table.
_OWN_EXTRAS = {"bench", "mutate", "test"}


def test_the_readme_lists_every_user_extra_with_what_it_installs() -> None:
    """Each extra users install has a row in the README's table naming its packages."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    rows = {}
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3:
            rows[cells[0]] = cells[1]
    for extra, requirements in extras.items():
        if extra in _OWN_EXTRAS:
            continue
        assert extra in rows, f"README.md's extras table has no row for {extra!r}"
        for requirement in requirements:
            name = requirement.split(">")[0].split("=")[0].split("[")[0]
            assert name in rows[extra], (extra, name)
