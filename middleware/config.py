"""Loading policies from a dict or a TOML file, reporting every problem at once.

The schema (TOML shown; a dict of the same shape works too)::

    [default]                 # the default Policy; every table is optional
    key = "..."               # optional
    [default.retry]
    max_attempts = 4
    retry_on = ["network", "timeout", "rate_limit", "server"]
    [default.breaker]
    failure_threshold = 5
    [default.timeout]
    attempt = 10.0            # seconds; "none" for no limit
    [default.budget]
    ratio = 0.2

    [routes."api.openai.com"]     # host pattern (fnmatch), optionally host:port
    llm = true
    [routes."api.openai.com".retry]
    max_attempts = 5

A route starts from the default section and overrides what it names.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attrs

from seawall.policy import BreakerPolicy, BudgetPolicy, Policy, RetryPolicy, TimeoutPolicy

__all__ = ["ConfigError", "Problem", "load_config", "load_file", "policy_from_dict"]

_SECTIONS: dict[str, type[Any]] = {
    "retry": RetryPolicy,
    "breaker": BreakerPolicy,
    "timeout": TimeoutPolicy,
    "budget": BudgetPolicy,
}
_POLICY_SCALARS = {"key": (str,), "llm": (bool,)}


@attrs.frozen
class Problem:
    """One thing wrong with a configuration: where, and what to do."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class ConfigError(ValueError):
    """A configuration has problems; ``problems`` lists every one of them."""

    def __init__(self, problems: list[Problem], source: str = "configuration") -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source} has {len(problems)} problem(s):\n{lines}")


def _none_words(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in {"none", "null", "off"}:
        return None
    return value


def _build_section(cls: type[Any], data: Any, where: str, problems: list[Problem]) -> Any | None:
    if not isinstance(data, Mapping):
        problems.append(Problem(where, f"must be a table of settings, not {data!r}"))
        return None
    fields = {f.name: f for f in attrs.fields(cls)}
    kwargs: dict[str, Any] = {}
    for name, raw in data.items():
        if name not in fields:
            known = ", ".join(sorted(fields))
            problems.append(Problem(f"{where}.{name}", f"unknown setting; known ones: {known}"))
            continue
        converter = fields[name].converter
        value = _none_words(raw) if cls is TimeoutPolicy else raw
        try:
            kwargs[name] = converter(value) if callable(converter) else value
        except (TypeError, ValueError) as exc:
            problems.append(Problem(f"{where}.{name}", str(exc)))
    # Check each field on its own, against the defaults plus the given values, so
    # that every bad field is reported rather than only the first.
    view = SimpleNamespace(**{**attrs.asdict(cls(), recurse=False), **kwargs})
    good: dict[str, Any] = {}
    for name, value in kwargs.items():
        validator = fields[name].validator
        try:
            if validator is not None:
                validator(view, fields[name], value)
        except (TypeError, ValueError) as exc:
            problems.append(Problem(f"{where}.{name}", str(exc)))
            continue
        good[name] = value
    if len(good) != len(data):
        return None
    try:
        return cls(**good)
    except (TypeError, ValueError) as exc:
        problems.append(Problem(where, str(exc)))
        return None


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = {**merged[name], **value}
        else:
            merged[name] = value
    return merged


def _policy(data: Any, where: str, problems: list[Problem]) -> Policy | None:
    if not isinstance(data, Mapping):
        problems.append(Problem(where, f"must be a table, not {data!r}"))
        return None
    kwargs: dict[str, Any] = {}
    before = len(problems)
    for name, raw in data.items():
        if name in _SECTIONS:
            section = _build_section(_SECTIONS[name], raw, f"{where}.{name}", problems)
            if section is not None:
                kwargs[name] = section
        elif name in _POLICY_SCALARS:
            if not isinstance(raw, _POLICY_SCALARS[name]):
                kind = _POLICY_SCALARS[name][0].__name__
                problems.append(Problem(f"{where}.{name}", f"must be a {kind}, not {raw!r}"))
            else:
                kwargs[name] = raw
        else:
            known = ", ".join([*_SECTIONS, *_POLICY_SCALARS])
            problems.append(Problem(f"{where}.{name}", f"unknown setting; known ones: {known}"))
    if len(problems) > before:
        return None
    try:
        return Policy(**kwargs)
    except (TypeError, ValueError) as exc:
        problems.append(Problem(where, str(exc)))
        return None


def policy_from_dict(data: Mapping[str, Any], *, where: str = "policy") -> Policy:
    """Build one ``Policy`` from a dict; raise ``ConfigError`` listing every problem."""
    problems: list[Problem] = []
    policy = _policy(data, where, problems)
    if problems or policy is None:
        raise ConfigError(problems or [Problem(where, "could not be built")])
    return policy


def load_config(
    data: Mapping[str, Any], *, source: str = "configuration"
) -> tuple[Policy, dict[str, Policy]]:
    """Read ``{"default": {...}, "routes": {pattern: {...}}}`` into policies.

    :returns: the default policy and the route policies by host pattern.
    :raises ConfigError: with every problem found, each with its location.
    """
    problems: list[Problem] = []
    if not isinstance(data, Mapping):
        raise ConfigError([Problem("<top>", "must be a table")], source)
    for name in data:
        if name not in {"default", "routes"}:
            problems.append(Problem(name, 'unknown section; use [default] and [routes."host"]'))
    default_data = data.get("default", {})
    before = len(problems)
    default = _policy(default_data, "default", problems) if default_data is not None else None
    default_ok = len(problems) == before
    routes: dict[str, Policy] = {}
    route_data = data.get("routes", {})
    if not isinstance(route_data, Mapping):
        problems.append(Problem("routes", "must be a table of host patterns"))
        route_data = {}
    # Routes inherit the default section; when it has problems, they are reported
    # once (under "default"), and each route is checked on its own settings.
    base = default_data if default_ok and isinstance(default_data, Mapping) else {}
    for pattern, raw in route_data.items():
        where = f"routes.{pattern!r}"
        if not isinstance(raw, Mapping):
            problems.append(Problem(where, f"must be a table, not {raw!r}"))
            continue
        route = _policy(_merge(base, raw), where, problems)
        if route is not None:
            routes[str(pattern)] = route
    if problems:
        raise ConfigError(problems, source)
    return default or Policy(), routes


def load_file(path: str | Path) -> tuple[Policy, dict[str, Policy]]:
    """Read a TOML file with ``load_config``'s schema."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(path), f"cannot be read: {exc.strerror}")]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem(str(path), f"is not valid TOML: {exc}")]) from exc
    return load_config(data, source=str(path))
