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

    [routes."api.openai.com"]     # host pattern (fnmatch), optionally host:port; not a URL,
                                  # no control, bidi or invisible characters
    preset = "llm"                # start from Policy.for_llm() instead of [default]
    [routes."api.openai.com".retry]
    max_attempts = 5

A route starts from the default section (or from its preset) and overrides,
field by field, what it names. Values are checked by the policy classes'
own validators; each problem is reported with its location, such as
``routes."api.example.com".retry.max_attempts``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from seawall._checks import show
from seawall._patterns import route_is_url, route_unseen
from seawall.config_file import FileProblem, read_data
from seawall.policy import Policy, TimeoutPolicy
from seawall.redact import redact_text
from seawall.redis_url import redis_url_problem, state_option_problem

__all__ = [
    "PRESETS",
    "ConfigError",
    "Problem",
    "load_config",
    "load_file",
    "policy_from_dict",
    "read_file",
    "state_from_config",
]

_SECTIONS = ("retry", "breaker", "timeout", "budget")
_SCALARS = ("key", "llm", "costs")

#: Presets a policy table can start from: ``preset = "llm"``.
PRESETS: dict[str, Callable[[], Policy]] = {"llm": Policy.for_llm}

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


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
        # Redacted: a location names a route's pattern, and a pattern can hold a URL's
        # query (``routes."https://host/?api_key=..."``); ``problems`` keeps them as written.
        lines = "\n".join(f"  {redact_text(str(p))}" for p in problems)
        super().__init__(f"{source} has {len(problems)} problem(s):\n{lines}")


def _none_words(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in {"none", "null", "off"}:
        return None
    return value


def _key(name: Any) -> str:
    """A name as TOML writes it in a dotted key: bare when it can be, else quoted."""
    text = str(name)
    return text if _BARE_KEY.fullmatch(text) else json.dumps(text)


def _unknown(name: Any, known: Iterable[str]) -> str:
    names = sorted(known)
    near = difflib.get_close_matches(str(name), names, n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return f"unknown setting; {hint}known ones: {', '.join(names)}"


def _view(base: Any, values: Mapping[str, Any]) -> Any:
    """An instance of ``type(base)`` holding ``values`` over ``base``'s, not validated.

    Validators are called with it, so that they see the other fields (for
    cross-field checks) and name the right class in their messages.
    """
    view = object.__new__(type(base))
    for field in attrs.fields(type(base)):
        object.__setattr__(view, field.name, values.get(field.name, getattr(base, field.name)))
    return view


def _check_fields(
    base: Any, values: Mapping[str, Any], where: str, problems: list[Problem]
) -> bool:
    """Run each named field's validator on its own, so every bad field is reported."""
    fields = attrs.fields_dict(type(base))
    view = _view(base, values)
    ok = True
    for name, value in values.items():
        validator = fields[name].validator
        try:
            if validator is not None:
                validator(view, fields[name], value)
        except (TypeError, ValueError) as exc:
            problems.append(Problem(f"{where}.{name}", str(exc)))
            ok = False
    return ok


def _in_table_order(problems: list[Problem], where: str, data: Mapping[str, Any]) -> list[Problem]:
    """``problems`` sorted by the order of the settings they are about in table ``data``."""
    order = {f"{where}.{_key(name)}": i for i, name in enumerate(data)}

    def rank(problem: Problem) -> int:
        head = problem.location[len(where) + 1 :]
        for name in (head, *(head[:i] for i, c in enumerate(head) if c == ".")):
            if f"{where}.{name}" in order:
                return order[f"{where}.{name}"]
        return -1

    return sorted(problems, key=rank)


def _build_section(base: Any, data: Any, where: str, problems: list[Problem]) -> Any | None:
    """``base`` (a sub-policy) with the settings of table ``data`` on top, or ``None``."""
    cls = type(base)
    if not isinstance(data, Mapping):
        problems.append(Problem(where, f"must be a table of settings, not {show(data)}"))
        return None
    fields = attrs.fields_dict(cls)
    values: dict[str, Any] = {}
    mine: list[Problem] = []  # sorted by the table's order before they are reported
    for name, raw in data.items():
        if name not in fields:
            mine.append(Problem(f"{where}.{_key(name)}", _unknown(name, fields)))
            continue
        converter = fields[name].converter
        value = _none_words(raw) if cls is TimeoutPolicy else raw
        try:
            values[name] = converter(value) if callable(converter) else value
        except (TypeError, ValueError) as exc:
            mine.append(Problem(f"{where}.{name}", str(exc)))
    ok = not mine
    checked = _check_fields(base, values, where, mine)
    problems.extend(_in_table_order(mine, where, data))
    if not (checked and ok):
        return None
    try:
        return attrs.evolve(base, **values)
    except (TypeError, ValueError) as exc:
        problems.append(Problem(where, str(exc)))
        return None


def _preset(data: Mapping[str, Any], where: str, problems: list[Problem]) -> Policy:
    if "preset" not in data:
        return Policy()
    name = data["preset"]
    if isinstance(name, str) and name in PRESETS:
        return PRESETS[name]()
    known = ", ".join(repr(p) for p in PRESETS)
    problems.append(Problem(f"{where}.preset", f"must be one of {known}, got {show(name)}"))
    return Policy()


def _policy(data: Any, where: str, problems: list[Problem]) -> Policy | None:
    if not isinstance(data, Mapping):
        problems.append(Problem(where, f"must be a table, not {show(data)}"))
        return None
    mine: list[Problem] = []
    base = _preset(data, where, mine)
    sections: dict[str, Any] = {}
    scalars: dict[str, Any] = {}
    for name, raw in data.items():
        if name in _SECTIONS:
            section = _build_section(getattr(base, name), raw, f"{where}.{name}", mine)
            if section is not None:
                sections[name] = section
        elif name in _SCALARS:
            scalars[name] = raw
        elif name != "preset":
            known = [*_SECTIONS, *_SCALARS, "preset"]
            mine.append(Problem(f"{where}.{_key(name)}", _unknown(name, known)))
    _check_fields(base, scalars, where, mine)
    problems.extend(_in_table_order(mine, where, data))
    if mine:
        return None
    try:
        return attrs.evolve(base, **sections, **scalars)
    except (TypeError, ValueError) as exc:
        problems.append(Problem(where, str(exc)))
        return None


#: A setting that belongs to a choice: a route choosing another ``retry.jitter``
#: than "proportional" does not inherit the default section's ``jitter_factor``
#: (which only proportional jitter takes). section -> (choice, its value, setting)
_BELONGS = {"retry": ("jitter", "proportional", "jitter_factor")}


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            section = {**merged[name], **value}
            choice, chosen, owned = _BELONGS.get(name, ("", "", ""))
            if choice in value and value[choice] != chosen and owned not in value:
                section.pop(owned, None)
            merged[name] = section
        else:
            merged[name] = value
    return merged


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
        raise ConfigError([Problem("<top>", f"must be a table, not {show(data)}")], source)
    for name in data:
        if name not in {"default", "routes", "state"}:
            where = _key(name)
            problems.append(
                Problem(where, 'unknown section; use [default], [routes."host"] and [state]')
            )
    _check_state(data.get("state"), problems)
    default_data = data.get("default")
    if default_data is None:
        default_data = {}
    before = len(problems)
    default = _policy(default_data, "default", problems)
    default_ok = len(problems) == before
    routes: dict[str, Policy] = {}
    route_data = data.get("routes", {})
    if not isinstance(route_data, Mapping):
        problems.append(
            Problem("routes", f"must be a table of host patterns, not {show(route_data)}")
        )
        route_data = {}
    # Routes inherit the default section; when it has problems, they are reported
    # once (under "default"), and each route is checked on its own settings. A
    # route naming a preset starts from it instead of from the default section.
    base = default_data if default_ok and isinstance(default_data, Mapping) else {}
    for pattern, raw in route_data.items():
        where = f"routes.{_key(pattern)}"
        # Checked before the blank test: "\x1c" or "\xa0" alone, which strip() removes,
        # is named as the character it is.
        why = (route_is_url(pattern) or route_unseen(pattern)) if isinstance(pattern, str) else None
        if why is None and (not isinstance(pattern, str) or not pattern.strip()):
            why = 'a route needs a host pattern, e.g. "api.example.com"'
        if why is not None:
            problems.append(Problem(where, why))
            continue
        if not isinstance(raw, Mapping):
            problems.append(Problem(where, f"must be a table, not {show(raw)}"))
            continue
        route = _policy(raw if "preset" in raw else _merge(base, raw), where, problems)
        if route is not None:
            routes[pattern] = route
    if problems or default is None:
        problems = _in_section_order(problems, data)
        raise ConfigError(problems or [Problem("default", "could not be built")], source)
    return default, routes


def _in_section_order(problems: list[Problem], data: Mapping[str, Any]) -> list[Problem]:
    """``problems`` sorted (stably) by the order of their top-level sections in ``data``."""
    order = {_key(name): i for i, name in enumerate(data)}

    def rank(problem: Problem) -> int:
        head = problem.location
        for name, i in order.items():
            if head == name or head.startswith(f"{name}."):
                return i
        return len(order)

    return sorted(problems, key=rank)


_STATE_FIELDS = {"url": str, "prefix": str, "timeout": float, "refresh": float}


def _check_state(data: Any, problems: list[Problem]) -> None:
    """``[state]``: where a fleet shares its state (``url = "redis://..."``, ``docs/fleet.md``)."""
    if data is None:
        return
    if not isinstance(data, Mapping):
        problems.append(
            Problem("state", f"must be a table with url = 'redis://...', not {show(data)}")
        )
        return
    for name, value in data.items():
        where = f"state.{_key(name)}"
        if name not in _STATE_FIELDS:
            problems.append(Problem(where, _unknown(name, _STATE_FIELDS)))
        elif name == "url" and not (isinstance(value, str) and value):
            problems.append(Problem(where, f"must be a non-empty string, not {show(value)}"))
        elif name != "url" and (why := state_option_problem(name, value)) is not None:
            # (the bounds the fleet's store enforces: NaN, 0 or 1e9 would fail at start-up)
            problems.append(Problem(where, f"{why}, not {show(value)}"))
    url = data.get("url")
    if "url" not in data:
        problems.append(Problem("state.url", "is missing; give url = 'redis://host:6379/0'"))
    elif isinstance(url, str) and url and (why := redis_url_problem(url)) is not None:
        problems.append(Problem("state.url", why))


def state_from_config(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``[state]`` table as ``seawall.fleet.Fleet`` arguments (``None``: in-process state).

    Call it on data ``load_config`` accepted (it checks the table).
    """
    table = data.get("state")
    if not isinstance(table, Mapping):
        return None
    options: dict[str, Any] = {"target": table["url"]}
    for name in ("prefix", "timeout", "refresh"):
        if name in table:
            options[name] = table[name]
    return options


def read_file(path: str | Path) -> dict[str, Any]:
    """A TOML file's data, or a ``ConfigError`` saying why it cannot be used.

    Refused with the fix: a missing path, a directory, a FIFO or device, a file over
    1 MiB, text that is not UTF-8, bad TOML (``seawall.config_file``).
    """
    try:
        return read_data(path)[1]
    except FileProblem as exc:
        raise ConfigError([Problem(str(exc.path), exc.reason)], source=str(exc.path)) from exc


def load_file(path: str | Path) -> tuple[Policy, dict[str, Policy]]:
    """Read a TOML file with ``load_config``'s schema."""
    return load_config(read_file(path), source=str(path))
