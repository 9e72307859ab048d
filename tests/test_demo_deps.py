"""`make demo` installs only ``seawall[demo]``: the demo must run without the rest."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Top-level modules of the other extras and of the test tools.
NOT_IN_THE_DEMO_INSTALL = (
    "anthropic",
    "genai_prices",
    "httpx",
    "httpx2",
    "httpx_aiohttp",
    "hypothesis",
    "matplotlib",
    "mypy",
    "openai",
    "opentelemetry",
    "prometheus_client",
    "pytest",
    "starlette",
    "uvicorn",
)

_RUN_WITHOUT = """
import sys
from importlib.abc import MetaPathFinder

BLOCKED = set(sys.argv[1].split(","))


class Missing(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not in seawall[demo])")
        return None


sys.meta_path.insert(0, Missing())
from seawall.cli import main

sys.exit(main(["demo", "--duration", "1", "--clients", "2"]))
"""


def test_the_demo_extra_is_rich_only_and_plot_has_matplotlib() -> None:
    """The extras `make demo` relies on: `demo` is rich; matplotlib is in `plot`."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    assert [d.split(">")[0] for d in extras["demo"]] == ["rich"]
    assert [d.split(">")[0] for d in extras["plot"]] == ["matplotlib"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert 'pip install --quiet --disable-pip-version-check ".[demo]"' in makefile


@pytest.mark.slow
def test_seawall_demo_runs_without_the_other_extras_and_test_tools(tmp_path: Path) -> None:
    """`seawall demo` imports nothing outside aiohttp, pluggy, attrs and rich."""
    done = subprocess.run(
        [sys.executable, "-c", _RUN_WITHOUT, ",".join(NOT_IN_THE_DEMO_INSTALL)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "naive" in done.stdout
    assert "logical requests" in done.stdout
