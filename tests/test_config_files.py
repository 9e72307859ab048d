"""Policy files a user may really hand over: not UTF-8, a pipe, huge, a bad ``[state]``.

``Seawall.from_file``, ``seawall.config.load_file`` and ``seawall check`` refuse
the same files with the same words (``seawall.config_file``; fifth audit).
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seawall
from seawall.config import ConfigError, load_config, load_file
from seawall.config_file import MAX_FILE_BYTES, FileProblem, read_data

#: A guard against a hang, not a measure.
GUARD = 60


def test_a_file_that_is_not_utf8_is_a_config_error_naming_the_byte(tmp_path: Path) -> None:
    """Latin-1 text gives a ConfigError with the path, the byte, its line and the fix."""
    path = tmp_path / "seawall.toml"
    path.write_bytes(b"[default]\n# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        seawall.Seawall.from_file(str(path), entrypoints=False)
    message = str(info.value)
    assert f"{path}: is not UTF-8 text (byte 0xe9 at offset 15, line 2); save it as UTF-8" in (
        message
    )


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """A file saved 'UTF-8 with BOM' (Windows editors) loads like one without."""
    path = tmp_path / "seawall.toml"
    path.write_bytes(b"\xef\xbb\xbf[default.retry]\nmax_attempts = 2\n")
    default, _routes = load_file(path)
    assert default.retry.max_attempts == 2


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO")
def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    """A FIFO (or /dev/stdin) as the policy file is refused, where reading it would block."""
    fifo = tmp_path / "seawall.toml"
    os.mkfifo(fifo)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, seawall\n"
            "try:\n    seawall.Seawall.from_file(sys.argv[1], entrypoints=False)\n"
            "except seawall.ConfigError as e:\n    print(e)",
            str(fifo),
        ],
        capture_output=True,
        text=True,
        timeout=GUARD,
        check=False,
    )
    assert "is not a regular file (a pipe, socket or device)" in done.stdout, done.stderr


def test_a_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    """A file over 1 MiB (a log, a dump) is refused, not parsed."""
    path = tmp_path / "seawall.toml"
    path.write_bytes(b"#" * MAX_FILE_BYTES + b"\n")
    with pytest.raises(ConfigError, match="is over 1024 KiB; a policy file is a few KiB"):
        load_file(path)


def test_a_missing_file_and_a_directory_say_what_to_give(tmp_path: Path) -> None:
    """A missing path and a directory each name the path and ask for a TOML file."""
    with pytest.raises(ConfigError, match="cannot be read: no such file; give the path"):
        load_file(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is a directory; give the path of a TOML policy"):
        load_file(tmp_path)


def test_a_toml_error_gives_its_line_and_column(tmp_path: Path) -> None:
    """A syntax error names the line and column tomllib found it at."""
    path = tmp_path / "seawall.toml"
    path.write_text("[default.retry]\nmax_attempts = = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"is not valid TOML: .*\(at line 2, column 16\)"):
        load_file(path)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("timeout", math.nan),
        ("timeout", 0),
        ("timeout", -0.05),
        ("timeout", 2.0),
        ("timeout", math.inf),
        ("refresh", 0.0),
        ("refresh", 60),
        ("refresh", math.nan),
        ("prefix", "app{x}"),
    ],
)
def test_state_settings_the_fleet_would_refuse_are_config_problems(
    setting: str, value: Any
) -> None:
    """`[state]` timeout, refresh and prefix out of the fleet's bounds are refused, located."""
    data = {"state": {"url": "redis://127.0.0.1:6379/0", setting: value}}
    with pytest.raises(ConfigError) as info:
        load_config(data)
    assert [p.location for p in info.value.problems] == [f"state.{setting}"]


@settings(max_examples=60, deadline=None)
@given(
    setting=st.sampled_from(["timeout", "refresh"]),
    value=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-10, 10),
        st.floats(0, 6),
    ),
)
def test_check_accepts_a_state_table_exactly_when_the_fleet_does(
    setting: str, value: float
) -> None:
    """Whatever the number, `load_config` refuses it iff building the fleet's store would."""
    data = {"state": {"url": "redis://127.0.0.1:1/0", setting: value}}
    try:
        load_config(data)
    except ConfigError:
        refused = True
    else:
        refused = False
    try:
        sw = seawall.Seawall.from_config(data, entrypoints=False)
    except ValueError:
        built = False
    else:
        built = True
        asyncio.run(sw.aclose())
    assert refused is not built


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_any_bytes_give_data_or_a_file_problem(tmp_path_factory: Any, data: bytes) -> None:
    """Whatever a file holds, reading it gives TOML data or a FileProblem, never another error."""
    path = tmp_path_factory.mktemp("any") / "seawall.toml"
    path.write_bytes(data)
    try:
        text, parsed = read_data(path)
    except FileProblem as exc:
        problem: FileProblem | None = exc
    else:
        problem = None
        assert isinstance(text, str)
        assert isinstance(parsed, dict)
    if problem is not None:
        assert problem.reason
        assert str(path) in str(problem)
