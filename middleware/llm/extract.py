"""The usage of a decoded answer as genai-prices' extractor reads it, faster for plain counts.

genai-prices' ``Provider.extract_usage`` walks each of its mappings (paths
into the answer's ``usage`` such as ``prompt_tokens_details.cached_tokens``)
with checks and error paths built on every call: ~0.03 ms of the event loop
per priced answer. Here a provider's extractor is turned once into a plan of
plain key paths, and an answer whose every mapped value is absent or a
non-negative ``int`` is read by it, to the same ``Usage``. Anything else
(a float, a bool, a negative count, a value where a table was expected, a
path that matches array items) is read by genai-prices' own extractor, which
gives what it gives or raises its own error.

Called with genai-prices imported (``seawall.llm.usage``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["read_usage"]

#: An extractor's mappings as plain key paths: (path, destination, required).
Steps = tuple[tuple[tuple[str, ...], str, bool], ...]

#: ``id(extractor)`` -> (the extractor, its root key, its steps), or ``None`` when only
#: genai-prices can follow its paths; the extractor is kept so its id is not reused.
_plans: dict[int, tuple[Any, tuple[str, Steps] | None]] = {}

_PLAN_MAX = 64


def _plan(extractor: Any) -> tuple[str, Steps] | None:
    root = extractor.root
    if not isinstance(root, str) or extractor.model_path != "model":
        return None
    reported = extractor._reported_usage_keys
    steps = []
    for mapping in extractor.mappings:
        if mapping.dest not in reported:
            continue  # genai-prices skips destinations it does not know
        path = (mapping.path,) if isinstance(mapping.path, str) else tuple(mapping.path)
        if not path or not all(type(step) is str for step in path):
            return None
        steps.append((path, mapping.dest, bool(mapping.required)))
    if not steps:
        return None
    return root, tuple(steps)


def _planned(extractor: Any) -> tuple[str, Steps] | None:
    found = _plans.get(id(extractor))
    if found is not None and found[0] is extractor:
        return found[1]
    try:
        plan = _plan(extractor)
    except Exception:  # genai-prices changed its extractors' shape: its own path only
        plan = None
    if len(_plans) >= _PLAN_MAX:
        _plans.clear()
    _plans[id(extractor)] = (extractor, plan)
    return plan


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)  # the ABC's check is slow


def _plain(data: Mapping[str, Any], root: str, steps: Steps) -> dict[str, int] | None:
    """The counts by destination when every mapped value is absent or a plain count
    (``type(value) is int``, not negative) and every required one is there; else
    ``None``, and genai-prices' extractor decides."""
    usage = data.get(root)
    if not _is_mapping(usage):
        return None
    values: dict[str, int] = {}
    for path, dest, required in steps:
        value: Any = usage
        for step in path:
            if not _is_mapping(value):  # genai-prices: an error, or not counted
                if required:
                    return None
                value = None
                break
            if step not in value:
                if required:
                    return None
                value = None
                break
            value = value[step]
        else:
            if value is None:
                return None  # present but null: genai-prices' checks decide
            if type(value) is not int or value < 0:
                return None
            values[dest] = values.get(dest, 0) + value
            continue
        if required:
            return None
    return values if values else None


def read_usage(provider: Any, data: Mapping[str, Any], flavor: str) -> tuple[dict[str, Any], Any]:
    """The counts genai-prices' ``Usage`` of ``data`` holds (for ``provider``'s ``flavor``
    extractor, as ``provider.extract_usage(data, api_flavor=flavor)[1]`` gives it), and
    that ``Usage``, or ``None`` when the counts were read here (build it from them when
    needed); raises as genai-prices does."""
    extractors = provider.extractors or ()
    extractor = next((e for e in extractors if e.api_flavor == flavor), None)
    plan = _planned(extractor) if extractor is not None else None
    values = _plain(data, *plan) if plan is not None else None
    if values is None:
        found = provider.extract_usage(data, api_flavor=flavor)[1]
        return found.__dict__, found
    return values, None
