"""The request path (private): registry, rules, the attempt loop, give-up, observer.

Adapters and the facade use it; nothing below it imports it. See
``docs/architecture.md`` for the order a request goes through these modules.
"""
