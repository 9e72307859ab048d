"""Where a location of ``seawall check``'s problems (``routes."a.b".retry``) is in the file.

A TOML file may write a table's name escaped (``"x\\u001b"``), quoted with a
``]`` inside, or spaced; the line found is the table's or the key's own.
"""

from __future__ import annotations

import json
import re

__all__ = ["find_line", "split_location"]


def split_location(location: str) -> list[str]:
    """``routes.'a.b'.retry`` -> ``["routes", "a.b", "retry"]``; ``"x\\u001b"`` unescaped."""
    found = re.findall(r"'([^']*)'|\"([^\"]*)\"|([^.]+)", location)
    return [a or _unquoted(b) or c for a, b, c in found]


def _unquoted(name: str) -> str:
    """A double-quoted name's text: ``\\u001b`` in the file and ``\\u001B`` in a location
    are one character (as TOML and JSON read them); left as written if it is not valid."""
    try:
        text = json.loads(f'"{name}"', strict=False)
    except ValueError:
        return name
    return text if isinstance(text, str) else name


def find_line(text: str, location: str) -> int | None:
    """The line (1-based) of the setting or table a problem's location names."""
    wanted = split_location(location)
    table: list[str] = []
    found: dict[tuple[str, ...], int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"\s*\[((?:\"[^\"]*\"|'[^']*'|[^\[\]\"'])+)\]", line)
        if header:
            table = split_location(header.group(1).replace(" ", ""))
            for size in range(1, len(table) + 1):  # [a.b] is where a is too, if a has no line
                found.setdefault(tuple(table[:size]), number)
            continue
        key = re.match(r"\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)\s*=", line)
        if key:
            found.setdefault((*table, key.group(1).strip("'\"")), number)
    for size in range(len(wanted), 0, -1):
        if tuple(wanted[:size]) in found:
            return found[tuple(wanted[:size])]
    return None
