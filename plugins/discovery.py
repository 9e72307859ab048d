"""Which ``seawall`` entry points are installed: scanned once per state of ``sys.path``.

``importlib.metadata.entry_points()`` reads the metadata of every installed
distribution, about half of what a ``Seawall()`` cost. What it finds only
changes when a distribution is installed or removed, or when ``sys.path`` or
``sys.meta_path`` changes; so the answer is kept with a key made of those: the
entries of both, the working directory (relative entries and ``""`` depend on
it), and each path entry's modification time in nanoseconds. Installing or
removing a distribution adds or removes a ``*.dist-info`` (or ``*.egg-info``)
directory in a ``sys.path`` directory, which changes that directory's
modification time: the next scan sees it. ``importlib.metadata`` caches each
directory's listing on the same modification time.

Not seen until something else changes the key: a file rewritten in place inside
a distribution's metadata directory (``entry_points.txt`` edited by hand); pip
and uv never do that, they replace the directory.

A directory changed within ``RACY_NS`` before the key was taken is "racy" (as
git calls it): on a filesystem with coarse timestamps a second change within
the same tick would leave its modification time as it was, so such an answer is
not kept and the next ``Seawall()`` scans again.

What is kept is what was found (entry points and their distributions' names
and versions), never what was loaded: each ``Seawall`` loads its plugins itself,
so a plugin that fails to load fails the same way every time.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import time

import attrs

from seawall.plugins import PROJECT_NAME

__all__ = ["RACY_NS", "Found", "cache_info", "entry_points", "forget", "path_key"]

#: A ``sys.path`` directory modified less than this long (ns) before the key was
#: taken keeps the scan from being cached: two filesystem timestamp ticks (FAT's
#: are 2 s), with room for clock steps.
RACY_NS = 5_000_000_000


@attrs.frozen
class Found:
    """One entry point of the ``seawall`` group, with its distribution's name and version
    (``None`` when the entry point has no distribution)."""

    entry_point: importlib.metadata.EntryPoint
    dist_name: str | None
    version: str | None


Key = tuple[object, ...]

#: The last scan: its key and what it found (``None`` before the first kept scan).
_last: tuple[Key, tuple[Found, ...]] | None = None
_counts = {"hits": 0, "scans": 0}


def _stamp(entry: object) -> int | None:
    """``entry``'s modification time in ns; ``None`` when it is not a path that exists."""
    try:
        return os.stat(entry or ".").st_mtime_ns  # type: ignore[arg-type]
    except (OSError, TypeError, ValueError):
        return None


def path_key() -> tuple[Key, int | None]:
    """The cache key for the current interpreter state, and its newest modification time.

    A few µs: one ``stat`` per ``sys.path`` entry.
    """
    try:
        cwd: str | None = os.getcwd()
    except OSError:  # the working directory was removed
        cwd = None
    entries = tuple(sys.path)
    stamps = tuple(_stamp(entry) for entry in entries)
    newest = max((s for s in stamps if s is not None), default=None)
    return (cwd, entries, stamps, tuple(sys.meta_path)), newest


def _scan() -> tuple[Found, ...]:
    found = []
    for ep in importlib.metadata.entry_points(group=PROJECT_NAME):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else None
        version = dist.version if dist is not None else None
        found.append(Found(ep, dist_name, version))
    return tuple(found)


def entry_points() -> tuple[Found, ...]:
    """The ``seawall`` group's entry points, in ``importlib.metadata``'s order.

    Scanned again whenever the key changed since the last scan, or that scan's
    key was racy; otherwise the last scan's answer.
    """
    global _last
    now = time.time_ns()
    key, newest = path_key()
    last = _last
    if last is not None and last[0] == key:
        _counts["hits"] += 1
        return last[1]
    _counts["scans"] += 1
    found = _scan()
    racy = newest is not None and newest > now - RACY_NS
    _last = None if racy else (key, found)
    return found


def forget() -> None:
    """Drop the kept answer: the next ``entry_points()`` scans."""
    global _last
    _last = None


def cache_info() -> dict[str, int]:
    """How often ``entry_points()`` answered from the cache (``hits``) and scanned (``scans``)."""
    return dict(_counts)
