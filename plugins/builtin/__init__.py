"""The built-in plugins: seawall's default behaviour, registered like any plugin.

Each is registered as ``seawall.builtin.<module>`` with ``trylast`` impls, so
any other plugin is asked first. Among ``trylast`` impls pluggy asks the
*first* registered first (it inserts each new trylast impl at the front of
the list it calls from the back; checked with pluggy 1.6/1.7), so specific
plugins come before fallbacks in this list: ``llm`` comes before ``http`` (it
answers for LLM routes, else defers to it) and before ``backoff`` (its longer
"overloaded" backoff must be asked before the generic strategies). Block one with
``Seawall(blocked=["seawall.builtin.logging_sink"])``.
"""

#: Module names under ``seawall.plugins.builtin``, in registration order.
BUILTIN_MODULES = ("exceptions", "llm", "http", "backoff", "logging_sink")
