"""Reading a TOML policy file: its text, and its data, or a ``ConfigError`` saying why not.

Used by ``Seawall.from_file``, ``seawall.config.load_file`` and ``seawall check``,
so the three refuse the same files with the same words. What is refused,
each with the fix:

- a path that is missing, a directory, or not a regular file (a FIFO such as
  ``/dev/stdin`` would block the process; ``/dev/zero`` would fill its memory);
- a file over ``MAX_FILE_BYTES`` (a policy file is a few KiB: a larger one is
  the wrong file);
- text that is not UTF-8 (TOML's encoding), with the offset and line of the
  first bad byte; a UTF-8 byte-order mark, as Windows editors write, is
  accepted;
- TOML syntax errors, with tomllib's line and column.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["MAX_FILE_BYTES", "FileProblem", "read_data", "read_text"]

#: The largest policy file read, in bytes (1 MiB).
MAX_FILE_BYTES = 1 << 20


class FileProblem(Exception):
    """A policy file that cannot be used: ``reason`` says why and what to do.

    ``seawall.config`` turns it into a ``ConfigError`` located at the path.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _opened(path: Path) -> int:
    """A descriptor of ``path`` opened for reading, once it is known to be a regular file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        reason = "cannot be read: no such file; give the path of a TOML policy file"
        raise FileProblem(path, reason) from None
    except OSError as exc:
        reason = f"cannot be read: {exc.strerror or exc}; check the path and its permissions"
        raise FileProblem(path, reason) from exc
    if stat.S_ISDIR(info.st_mode):
        raise FileProblem(path, "is a directory; give the path of a TOML policy file in it")
    if not stat.S_ISREG(info.st_mode):
        reason = (
            "is not a regular file (a pipe, socket or device); give the path of a TOML policy file"
        )
        raise FileProblem(path, reason)
    try:
        # O_NONBLOCK: should the path be swapped for a FIFO after the check, open()
        # does not wait for a writer (and reading it gives no data, not a hang).
        return os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        reason = f"cannot be read: {exc.strerror or exc}; check its permissions"
        raise FileProblem(path, reason) from exc


def _read_bytes(path: Path) -> bytes:
    fd = _opened(path)
    try:
        with os.fdopen(fd, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        reason = f"cannot be read: {exc.strerror or exc}; check the file"
        raise FileProblem(path, reason) from exc
    if len(data) > MAX_FILE_BYTES:
        reason = (
            f"is over {MAX_FILE_BYTES // 1024} KiB; a policy file is a few KiB: "
            "check that this is the right file"
        )
        raise FileProblem(path, reason)
    return data


def read_text(path: str | os.PathLike[str]) -> str:
    """The text of policy file ``path``; ``FileProblem`` says why it cannot be used."""
    path = Path(path)
    data = _read_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
        offset = exc.start + start
        line = data.count(b"\n", 0, offset) + 1
        reason = (
            f"is not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset}, line {line}); "
            "save it as UTF-8, as TOML files are"
        )
        raise FileProblem(path, reason) from None


def read_data(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    """The text and the parsed TOML data of policy file ``path``, or a ``FileProblem``."""
    text = read_text(path)
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        reason = f"is not valid TOML: {exc}; fix the syntax there (see https://toml.io)"
        raise FileProblem(Path(path), reason) from exc
