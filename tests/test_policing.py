"""Policing (datasette style): every hook is named, documented and tested."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from seawall.plugins import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(
    name
    for name, fn in vars(hookspecs).items()
    if inspect.isfunction(fn) and hasattr(fn, "seawall_spec")
)


def test_hookspecs_are_found() -> None:
    """The policing tests below see every hook spec (and only specs)."""
    assert len(HOOKS) == 5


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_names_start_with_seawall(hook) -> None:
    """Every hook is called seawall_<verb>[_<noun>] and has a docstring."""
    assert re.fullmatch(r"seawall_[a-z]+(_[a-z]+)*", hook)
    assert inspect.getdoc(getattr(hookspecs, hook))


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docs_page_titled_with_its_signature(hook) -> None:
    """docs/hooks/<name>.md exists and its title is the hook's signature."""
    page = ROOT / "docs" / "hooks" / f"{hook}.md"
    assert page.exists(), f"{hook} has no docs page: write {page.relative_to(ROOT)}"
    args = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    title = page.read_text(encoding="utf-8").splitlines()[0]
    assert title == f"# `{hook}({args})`"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook) -> None:
    """Some test module defines test_hook_<name>."""
    pattern = re.compile(rf"^(async )?def test_hook_{hook}\(", re.MULTILINE)
    assert any(
        pattern.search(path.read_text(encoding="utf-8"))
        for path in (ROOT / "tests").glob("test_*.py")
    )
