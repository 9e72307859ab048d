"""The built-in plugins: seawall's default behaviour, registered like any plugin.

Each is registered as ``seawall.builtin.<module>`` with ``trylast`` impls, so
any other plugin is asked first. Among themselves the built-ins are asked in
the order of ``PRIORITY`` below, lowest first; this table is the only place
that order is decided. For classification: the user's patterns, then the LLM
providers' error codes (LLM routes only), then exceptions, then HTTP statuses;
for backoff: the LLM plugin's longer "overloaded" backoff, then the policy's
strategy. Block one with ``Seawall(blocked=["seawall.builtin.logging_sink"])``.
"""

from __future__ import annotations

#: Every built-in plugin module under ``seawall.plugins.builtin`` and its
#: priority: a lower number is asked first, by every hook the module implements.
PRIORITY: dict[str, int] = {
    "patterns": 10,  # add_pattern / Seawall(patterns=...): before every built-in
    "llm": 20,  # provider error codes on LLM routes; "overloaded" backoff
    "exceptions": 30,  # exception types, the message table, status attributes
    "http": 40,  # the status table and wait headers
    "backoff": 50,  # the policy's strategy: always answers
    "logging_sink": 60,  # logs incidents
}

#: Module names in the order they are asked (sorted by ``PRIORITY``).
BUILTIN_MODULES: tuple[str, ...] = tuple(sorted(PRIORITY, key=PRIORITY.__getitem__))
