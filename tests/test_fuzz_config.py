"""Property-based tests of the config loaders: valid documents round-trip, bad ones are
refused with ``ConfigError`` naming the field (never a raw TypeError/KeyError/...)."""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall import BreakerPolicy, BudgetPolicy, Category, Policy, RetryPolicy, TimeoutPolicy
from seawall._checks import HTTP_METHODS
from seawall.config import ConfigError, load_config, load_file, policy_from_dict
from seawall.policy import JITTERS

FUZZ = settings(max_examples=100, deadline=None, database=None)

_SECONDS = st.floats(0, 1000, allow_nan=False)
_POSITIVE = st.floats(0.001, 1000, allow_nan=False)
_METHOD = st.sampled_from(sorted(HTTP_METHODS)).map(lambda m: m.lower() if len(m) % 2 else m)


@st.composite
def retry_tables(draw: Any) -> dict[str, Any]:
    base = draw(_SECONDS)
    table = {
        "max_attempts": draw(st.integers(1, 50)),
        "backoff": draw(st.sampled_from(["exponential", "decorrelated", "constant", "linear"])),
        "jitter": draw(st.sampled_from(["full", "equal", "proportional", "none"])),
        "base_delay": base,
        "multiplier": draw(st.floats(1, 10)),
        "max_delay": base + draw(_SECONDS),
        "retry_methods": draw(st.lists(_METHOD, max_size=5)),
        "retry_on": draw(st.lists(st.sampled_from([c.value for c in Category]), max_size=5)),
        "retry_after_max": draw(_SECONDS),
    }
    keep = {"base_delay", "max_delay"}
    if table["jitter"] == "proportional" and draw(st.booleans()):
        table["jitter_factor"] = draw(st.floats(0.01, 1))
        keep |= {"jitter", "jitter_factor"}  # a factor needs its jitter
    return draw(_some_of(table, keep=keep))


@st.composite
def breaker_tables(draw: Any) -> dict[str, Any]:
    window = draw(st.integers(1, 500))
    table = {
        "failure_threshold": draw(st.integers(1, 50)),
        "failure_rate": draw(st.floats(0, 1)),
        "window": window,
        "minimum_calls": draw(st.integers(1, window)),
        "recovery_timeout": draw(_SECONDS),
        "half_open_max_calls": draw(st.integers(1, 10)),
        "success_threshold": draw(st.integers(1, 10)),
        "enabled": draw(st.booleans()),
        "hold": draw(_SECONDS),
        "hold_max_calls": draw(st.integers(1, 1000)),
        "probe_share": draw(st.floats(0, 0.05)),
        "mode": draw(st.sampled_from(["classic", "adaptive"])),
        "k": draw(st.floats(1, 100)),
        "throttle_window": draw(st.floats(1, 3600)),
    }
    return draw(_some_of(table, keep={"window", "minimum_calls"}))


def _some_of(table: dict[str, Any], keep: set[str] = set()) -> Any:  # noqa: B006
    names = sorted(table)
    return st.sets(st.sampled_from(names)).map(
        lambda chosen: {n: table[n] for n in names if n in chosen or n in keep}
    )


_LIMIT = st.one_of(_POSITIVE, st.sampled_from(["none", "None", "null", "off"]))
TIMEOUTS = st.fixed_dictionaries({}, optional={"attempt": _LIMIT, "deadline": _LIMIT})
BUDGETS = st.fixed_dictionaries(
    {},
    optional={
        "ratio": st.floats(0, 5),
        "min_retries_per_second": st.floats(0, 50),
        "window": _POSITIVE,
        "enabled": st.booleans(),
    },
)
#: Refused in a route pattern or a key (test_route_patterns.py): C0, DEL, C1, bidi
#: controls and marks, zero-width characters, the separators and the no-break space.
UNSEEN = (
    "".join(
        chr(c)
        for low, high in [(0, 0x1F), (0x7F, 0x9F), (0x202A, 0x202E), (0x2066, 0x2069)]
        for c in range(low, high + 1)
    )
    + "\u200e\u200f\u061c\u200b\u2060\ufeff\u2028\u2029\xa0"
)
#: Refused too, but between two non-ASCII letters, marks or symbols.
JOINERS = "\u200c\u200d"
#: Text a pattern or a key may be: any, but for those.
NAMES = st.text(
    st.characters(codec="utf-8", exclude_characters=UNSEEN + JOINERS), min_size=1, max_size=20
)


def _joins(char: str) -> bool:
    return not char.isascii() and unicodedata.category(char)[0] in "LMS"


def _clean(text: str) -> bool:
    """Whether ``text`` holds no refused character (a joiner only between letters)."""
    return not any(c in UNSEEN for c in text) and all(
        0 < i < len(text) - 1 and _joins(text[i - 1]) and _joins(text[i + 1])
        for i, c in enumerate(text)
        if c in JOINERS
    )


POLICY_TABLES = st.fixed_dictionaries(
    {},
    optional={
        "retry": retry_tables(),
        "breaker": breaker_tables(),
        "timeout": TIMEOUTS,
        "budget": BUDGETS,
        "key": NAMES,
        "llm": st.booleans(),
        "preset": st.just("llm"),
    },
)
# "://" makes a pattern a URL, which is refused (test_a_url_as_a_route_pattern_is_refused...)
PATTERNS = NAMES.filter(lambda p: p.strip() and "://" not in p)


def expected_policy(table: dict[str, Any]) -> Policy:
    """What a table means, built with the Python API."""
    sections = {n: dict(table[n]) for n in ("retry", "breaker", "timeout", "budget") if n in table}
    for name, value in sections.get("timeout", {}).items():
        if isinstance(value, str):
            sections["timeout"][name] = None
    scalars = {n: table[n] for n in ("key", "llm") if n in table}
    if table.get("preset") == "llm":
        return Policy.for_llm(**sections, **scalars)
    classes = {"retry": RetryPolicy, "breaker": BreakerPolicy, "timeout": TimeoutPolicy}
    classes["budget"] = BudgetPolicy
    built = {n: classes[n](**v) for n, v in sections.items()}
    return Policy(**built, **scalars)


def merged(default: dict[str, Any], route: dict[str, Any]) -> dict[str, Any]:
    if "preset" in route:
        return route
    out = dict(default)
    for name, value in route.items():
        out[name] = {**out[name], **value} if isinstance(value, dict) and name in out else value
    retry = route.get("retry", {})
    if retry.get("jitter", "proportional") != "proportional" and "jitter_factor" not in retry:
        # a route choosing another jitter does not inherit the default's jitter_factor
        out["retry"] = {n: v for n, v in out["retry"].items() if n != "jitter_factor"}
    return out


def _string(text: str) -> str:
    """A TOML basic string: JSON's escapes, but astral characters kept and DEL escaped."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for the documents generated here (tomllib only reads)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v) if isinstance(v, int) or math.isfinite(v) else str(v)
        if isinstance(v, str):
            return _string(v)
        return "[" + ", ".join(value(x) for x in v) + "]"

    lines, tables = [], []
    for name, v in data.items():
        key = _string(name)
        if isinstance(v, dict):
            tables.append(to_toml(v, f"{prefix}{key}."))
        else:
            lines.append(f"{key} = {value(v)}")
    head = f"[{prefix[:-1]}]\n" if prefix else ""
    return head + "".join(f"{line}\n" for line in lines) + "".join(tables)


@FUZZ
@given(POLICY_TABLES, st.dictionaries(PATTERNS, POLICY_TABLES, max_size=3))
def test_valid_documents_round_trip(default: dict[str, Any], routes: dict[str, Any]) -> None:
    """A dict and the same document as TOML both give the policies the Python API gives."""
    got_default, got_routes = load_config({"default": default, "routes": routes})
    assert got_default == expected_policy(default)
    assert got_routes == {p: expected_policy(merged(default, r)) for p, r in routes.items()}
    assert policy_from_dict(default) == got_default


@settings(max_examples=30, deadline=None, database=None)
@given(POLICY_TABLES, st.dictionaries(PATTERNS, POLICY_TABLES, max_size=2))
def test_valid_toml_files_round_trip(tmp_path_factory: Any, default: Any, routes: Any) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "seawall.toml"
    path.write_text(to_toml({"default": default, "routes": routes}), encoding="utf-8")
    assert load_file(path) == load_config({"default": default, "routes": routes})


# --- wrong values: always a ConfigError naming the field --------------------------

_JUNK = st.one_of(
    st.text(max_size=10),
    st.binary(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.none(),
)
_NOT_FINITE = st.sampled_from([math.inf, -math.inf, math.nan])
_NOT_INT = st.one_of(
    _JUNK, st.booleans(), _NOT_FINITE, st.floats(0.5, 9.5).filter(lambda f: f != int(f))
)
_NOT_BOOL = st.one_of(_JUNK, st.integers(), st.floats())


def _not_number(low: float, high: float = math.inf, strict: bool = False) -> Any:
    below = st.floats(max_value=low, exclude_max=not strict, allow_nan=False, allow_infinity=False)
    above = (
        st.floats(min_value=high, exclude_min=True, allow_infinity=False)
        if high < math.inf
        else st.nothing()
    )
    return st.one_of(
        _JUNK, st.booleans(), _NOT_FINITE, below.filter(lambda f: f < low or strict), above
    )


def _unknown_names(known: list[str]) -> Any:
    return st.lists(
        st.text(max_size=12).filter(lambda n: n.strip().upper() not in known),
        min_size=1,
        max_size=2,
    )


BAD: dict[tuple[str, str], Any] = {
    ("retry", "max_attempts"): st.one_of(_NOT_INT, st.integers(max_value=0)),
    ("retry", "backoff"): st.one_of(_JUNK.filter(lambda v: v not in BACKOFFS), st.integers()),
    ("retry", "jitter"): st.one_of(_JUNK.filter(lambda v: v not in JITTERS)),
    # None is jitter_factor's default (0.1 once jitter="proportional"): not a wrong value.
    ("retry", "jitter_factor"): _not_number(0, 1, strict=True).filter(lambda v: v is not None),
    ("retry", "base_delay"): _not_number(0),
    ("retry", "multiplier"): _not_number(1),
    ("retry", "max_delay"): _not_number(0),
    ("retry", "retry_methods"): st.one_of(
        _unknown_names(sorted(HTTP_METHODS)), st.binary(min_size=1, max_size=4), st.integers()
    ),
    ("retry", "retry_on"): st.one_of(
        _unknown_names([c.value.upper() for c in Category]),
        st.integers(),
        st.lists(st.integers(), min_size=1),
    ),
    ("retry", "retry_after_max"): _not_number(0),
    ("breaker", "failure_threshold"): st.one_of(_NOT_INT, st.integers(max_value=0)),
    ("breaker", "failure_rate"): _not_number(0, 1),
    ("breaker", "window"): st.one_of(_NOT_INT, st.integers(max_value=0)),
    ("breaker", "minimum_calls"): st.one_of(
        _NOT_INT, st.integers(max_value=0), st.integers(101, 10**30)
    ),
    ("breaker", "recovery_timeout"): _not_number(0),
    ("breaker", "half_open_max_calls"): st.one_of(_NOT_INT, st.integers(max_value=0)),
    ("breaker", "success_threshold"): st.one_of(_NOT_INT, st.integers(max_value=0)),
    ("breaker", "enabled"): _NOT_BOOL,
    ("breaker", "hold"): _not_number(0),
    ("breaker", "hold_max_calls"): st.one_of(_NOT_INT, st.integers(max_value=0)),
    ("breaker", "probe_share"): _not_number(0, 0.05),
    ("breaker", "mode"): st.one_of(
        _JUNK.filter(lambda v: v not in ("classic", "adaptive")), st.integers()
    ),
    ("breaker", "k"): _not_number(1, 100),
    ("breaker", "throttle_window"): _not_number(1),
    ("timeout", "attempt"): _not_number(0, strict=True).filter(lambda v: not _is_none_word(v)),
    ("timeout", "deadline"): _not_number(0, strict=True).filter(lambda v: not _is_none_word(v)),
    ("budget", "ratio"): _not_number(0),
    ("budget", "min_retries_per_second"): _not_number(0),
    ("budget", "window"): _not_number(0, strict=True),
    ("budget", "enabled"): _NOT_BOOL,
    ("", "key"): st.one_of(
        st.just(""), st.integers(), st.booleans(), st.lists(st.text(), min_size=1)
    ),
    ("", "llm"): _NOT_BOOL,
    ("", "preset"): st.one_of(_JUNK, st.integers()).filter(lambda v: v != "llm"),
}
BACKOFFS = ("exponential", "decorrelated", "constant", "linear")


def _is_none_word(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.lower() in {"none", "null", "off"})


def test_every_setting_has_a_bad_value_strategy() -> None:
    import attrs

    classes = {
        "retry": RetryPolicy,
        "breaker": BreakerPolicy,
        "timeout": TimeoutPolicy,
        "budget": BudgetPolicy,
    }
    every = {(s, f.name) for s, cls in classes.items() for f in attrs.fields(cls)}
    assert every | {("", "key"), ("", "llm"), ("", "preset")} == set(BAD)


@FUZZ
@given(POLICY_TABLES, st.sampled_from(sorted(BAD)), st.data(), st.booleans())
def test_a_wrong_value_is_a_config_error_naming_the_field(
    table: dict[str, Any], field: tuple[str, str], data: Any, in_route: bool
) -> None:
    section, name = field
    bad = data.draw(BAD[field])
    table = {k: dict(v) if isinstance(v, dict) else v for k, v in table.items()}
    if section:
        table.setdefault(section, {})[name] = bad
    else:
        table[name] = bad
    document = {"routes": {"api.x": table}} if in_route else {"default": table}
    with pytest.raises(ConfigError) as info:
        load_config(document)
    where = 'routes."api.x"' if in_route else "default"
    wanted = f"{where}.{section}.{name}" if section else f"{where}.{name}"
    assert wanted in {p.location for p in info.value.problems}, info.value.problems
    assert all(p.message for p in info.value.problems)


JUNK_DOCS = st.recursive(
    st.one_of(_JUNK, st.integers(), st.floats(), st.booleans()),
    lambda inner: st.dictionaries(
        st.one_of(
            st.sampled_from(
                [
                    "default",
                    "routes",
                    "retry",
                    "breaker",
                    "timeout",
                    "budget",
                    "key",
                    "llm",
                    "preset",
                    "max_attempts",
                    "enabled",
                    "deadline",
                    "api.x",
                ]
            ),
            st.text(max_size=5),
        ),
        inner,
        max_size=4,
    ),
    max_leaves=15,
)


@FUZZ
@given(JUNK_DOCS)
def test_any_document_gives_policies_or_a_config_error(document: Any) -> None:
    """Random shapes never raise a raw TypeError, KeyError, AttributeError..."""
    problems = []
    try:
        load_config(document)
    except ConfigError as exc:
        problems = exc.problems
        assert problems, "a ConfigError lists its problems"
    assert all(isinstance(p.location, str) and p.message for p in problems)


def test_a_route_choosing_another_jitter_drops_the_inherited_factor() -> None:
    """The case hypothesis found (a full `make test` run, 2026-12-02): the model above knows
    the rule only since then."""
    default = {"retry": {"jitter": "proportional", "jitter_factor": 1.0}}
    routes = {"0": {"retry": {"jitter": "full"}}}
    _, got_routes = load_config({"default": default, "routes": routes})
    assert got_routes["0"] == expected_policy(merged(default, routes["0"]))
    assert got_routes["0"].retry.jitter_factor is None


_HOSTS = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,8}){0,3}", fullmatch=True)


@FUZZ
@given(
    st.sampled_from(["http", "https", "HTTP", "wss"]),
    _HOSTS,
    st.one_of(st.none(), st.integers(1, 65535)),
    st.sampled_from(["", "/", "/v1", "/v1/chat?x=1", "#top"]),
    POLICY_TABLES,
)
def test_a_url_as_a_route_pattern_is_refused_naming_its_host(
    scheme: str, host: str, port: int | None, rest: str, table: dict[str, Any]
) -> None:
    """A route pattern holding '://' is a ConfigError at the route, naming the host to write."""
    written = host if port is None else f"{host}:{port}"
    pattern = f"{scheme}://{written}{rest}"
    with pytest.raises(ConfigError) as info:
        load_config({"routes": {"ok.example": {}, pattern: table}})
    (problem,) = info.value.problems
    assert problem.location == f"routes.{json.dumps(pattern)}"
    assert problem.message.endswith(f"write {written!r}")


_SECTION_NAMES = st.sampled_from(["default", "routes", "state", "defaults", "route", "x y"])


@FUZZ
@given(st.dictionaries(_SECTION_NAMES, st.one_of(st.integers(), st.just({"bogus": 1})), min_size=1))
def test_problems_come_in_the_order_of_their_sections(document: dict[str, Any]) -> None:
    """Problems are listed section by section, in the document's order, unknown sections too."""
    with pytest.raises(ConfigError) as info:
        load_config(document)
    keys = [json.dumps(n) if " " in n else n for n in document]
    heads = [p.location.split(".")[0] for p in info.value.problems]
    assert set(heads) <= set(keys)
    ranks = [keys.index(h) for h in heads]
    assert ranks == sorted(ranks)


# --- control and bidi characters in patterns and keys: refused, nothing else -------


def _refused_or_clean(load: Any, pattern: str) -> None:
    """``load()`` accepts ``pattern`` (then it holds no refused character) or raises ConfigError."""
    try:
        _, routes = load()
    except ConfigError as exc:
        shown = str(exc)
    else:
        assert pattern in routes
        assert _clean(pattern)
        return
    assert not any(c in shown for c in UNSEEN if c != "\n")  # escaped ("\n" ends its lines)


@FUZZ
@given(st.text(max_size=20), NAMES)
def test_any_route_pattern_is_taken_clean_or_refused_with_a_config_error(
    pattern: str, host: str
) -> None:
    """Any text as a pattern: accepted without a control or bidi character, or a ConfigError."""
    _refused_or_clean(lambda: load_config({"routes": {pattern: {}}}), pattern)
    mixed = f"{host[: len(host) // 2]}{pattern}{host[len(host) // 2 :]}"
    _refused_or_clean(lambda: load_config({"routes": {mixed: {}}}), mixed)


@settings(max_examples=50, deadline=None, database=None)
@given(st.text(max_size=20))
def test_any_route_pattern_in_a_file_is_taken_clean_or_refused(
    tmp_path_factory: Any, pattern: str
) -> None:
    """The same through TOML: written as a quoted table name (any character escaped or kept)."""
    path = tmp_path_factory.mktemp("fuzz") / "seawall.toml"
    path.write_text(f"[routes.{_string(pattern)}]\n", encoding="utf-8")
    _refused_or_clean(lambda: load_file(path), pattern)


@FUZZ
@given(st.text(max_size=20))
def test_any_key_is_taken_clean_or_refused_with_a_config_error(key: str) -> None:
    """Any text as Policy.key in [default] and in a route: kept clean, or a ConfigError."""
    try:
        default, routes = load_config({"default": {"key": key}, "routes": {"api.x": {"key": key}}})
    except ConfigError as exc:
        shown = str(exc)
    else:
        assert default.key == routes["api.x"].key == key
        assert _clean(key)
        return
    assert not any(c in shown for c in UNSEEN if c != "\n")
