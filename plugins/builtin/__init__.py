"""The built-in plugins: seawall's default behaviour, registered like any plugin.

Each is registered as ``seawall.builtin.<module>`` with ``trylast`` impls, so
any other plugin is asked first. Among them pluggy asks the last registered
first, so fallbacks come first in this list: ``llm`` comes after ``http`` (it
answers for LLM routes, else defers to it) and after ``backoff`` (its longer
"overloaded" backoff must be asked before the generic strategies). Block one with
``Seawall(blocked=["seawall.builtin.logging_sink"])``.
"""

#: Module names under ``seawall.plugins.builtin``, in registration order.
BUILTIN_MODULES = ("exceptions", "http", "backoff", "llm", "logging_sink")
