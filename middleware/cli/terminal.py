"""What the ``seawall`` command writes is safe to show on a terminal.

The command echoes what it was given: route patterns and keys from a policy
file, ``--method``, an exception's message, plugin names. Any of them can hold
an escape sequence (``\\x1b]0;title\\x07``, ``\\x1b[2J``) that a terminal would
obey, or a bidi control (U+202E) that shows ``moc.evil`` as ``evil.com``.
A line or paragraph separator (U+2028, U+2029) breaks a line where the output
has none, and a space other than U+0020 (a no-break space) reads as one and is
not. ``Safe`` writes every control and format character, separator and space
but U+0020 (Unicode categories Cc, Cf, Zl, Zp and Zs; newlines and tabs
excepted) as a visible escape, ``\\x1b``, ``\\u202e``, ``\\u2028`` or ``\\xa0``,
the way ``repr`` would. JSON output needs none of it: ``json.dumps`` escapes
them already (every character outside ASCII).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Protocol, TextIO

__all__ = ["Out", "Safe", "terminal_safe"]

_KEPT = frozenset("\n\t ")
#: What is escaped (but ``_KEPT``): controls, format characters, separators, spaces.
_ESCAPED = frozenset({"Cc", "Cf", "Zl", "Zp", "Zs"})


class Out(Protocol):
    """Where a subcommand writes: a text stream (``sys.stdout``, ``Safe``, ``io.StringIO``)."""

    def write(self, text: str, /) -> int: ...

    def writelines(self, lines: Iterable[str], /) -> None: ...

    def flush(self) -> None: ...

    def isatty(self) -> bool: ...


def _escape(char: str) -> str:
    """``\\x1b``, ``\\u202e``: as ``repr`` writes a character it does not print."""
    return repr(char)[1:-1]


def terminal_safe(text: str) -> str:
    """``text`` with its control and format characters, separators and spaces but
    ``' '`` (and not ``\\n``, ``\\t``) escaped."""
    if text.isprintable() or not any(_unsafe(c) for c in text):
        return text
    return "".join(_escape(c) if _unsafe(c) else c for c in text)


def _unsafe(char: str) -> bool:
    return char not in _KEPT and unicodedata.category(char) in _ESCAPED


class Safe:
    """A text stream that passes ``terminal_safe`` text to ``stream``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str, /) -> int:
        return self.stream.write(terminal_safe(text))

    def writelines(self, lines: Iterable[str], /) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()
