"""Every policy field refuses nonsense with a message naming ``Class.field``; presets merge."""

from __future__ import annotations

import math
import textwrap
from typing import Any

import attrs
import pytest

import seawall
from seawall import (
    BreakerPolicy,
    BudgetPolicy,
    EscalationPolicy,
    Policy,
    RetryPolicy,
    TimeoutPolicy,
)
from seawall.cli import main
from seawall.config import ConfigError, load_config, load_file
from seawall.policy import IDEMPOTENT_METHODS

_INTS = ["three", 2.5, True, None, [1], math.inf]  # wrong types for an int field
_NUMBERS = ["1.5", True, None, [1], b"1"]  # wrong types for a number field
_NOT_FINITE = [math.inf, -math.inf, math.nan]
_ADVICE = ("must be", "give", "use ", "did you mean", "lower minimum_calls")

# (class, field, values of the wrong type, values of the right type out of range)
FIELDS: list[tuple[type[Any], str, list[Any], list[Any]]] = [
    (RetryPolicy, "max_attempts", _INTS, [0, -1]),
    (RetryPolicy, "backoff", [1, None, b"constant"], ["fibonacci", "Exponential"]),
    (RetryPolicy, "jitter", [0, None], ["some", ""]),
    (RetryPolicy, "jitter_factor", ["0.1", True, [1], b"1"], [0, -0.1, 1.01, *_NOT_FINITE]),
    (RetryPolicy, "base_delay", _NUMBERS, [-0.1, *_NOT_FINITE, 10**400]),
    (RetryPolicy, "multiplier", _NUMBERS, [0.5, *_NOT_FINITE]),
    (RetryPolicy, "max_delay", _NUMBERS, [-1, *_NOT_FINITE]),
    (RetryPolicy, "retry_methods", [b"GET", [b"GET"], 7, {"GET": 1}, [1]], ["GETT", ["GET", "x"]]),
    (RetryPolicy, "retry_on", [b"server", 7, [None], {"server": 1}], ["servr", ["network", ""]]),
    (RetryPolicy, "retry_after_max", _NUMBERS, [-1, *_NOT_FINITE]),
    (BreakerPolicy, "failure_threshold", _INTS, [0]),
    (BreakerPolicy, "failure_rate", _NUMBERS, [-0.1, 1.01, *_NOT_FINITE]),
    (BreakerPolicy, "window", _INTS, [0]),
    (BreakerPolicy, "minimum_calls", _INTS, [0, 101]),
    (BreakerPolicy, "recovery_timeout", _NUMBERS, [-1, *_NOT_FINITE]),
    (BreakerPolicy, "half_open_max_calls", _INTS, [0]),
    (BreakerPolicy, "success_threshold", _INTS, [0]),
    (BreakerPolicy, "enabled", ["false", "true", 0, 1, None], []),
    (BreakerPolicy, "hold", _NUMBERS, [-0.1, *_NOT_FINITE]),
    (BreakerPolicy, "hold_max_calls", _INTS, [0]),
    (BreakerPolicy, "probe_share", _NUMBERS, [-0.01, 0.06, *_NOT_FINITE]),
    (BreakerPolicy, "mode", [1, None, b"adaptive"], ["sre", "Adaptive", ""]),
    (BreakerPolicy, "k", _NUMBERS, [0.5, 101, *_NOT_FINITE]),
    (BreakerPolicy, "throttle_window", _NUMBERS, [0.5, *_NOT_FINITE]),
    (TimeoutPolicy, "attempt", _NUMBERS[:2], [0, -1, *_NOT_FINITE]),
    (TimeoutPolicy, "deadline", ["none", False], [0, *_NOT_FINITE]),
    (BudgetPolicy, "ratio", _NUMBERS, [-1, *_NOT_FINITE]),
    (BudgetPolicy, "min_retries_per_second", _NUMBERS, [-1, *_NOT_FINITE]),
    (BudgetPolicy, "window", _NUMBERS, [0, -1, *_NOT_FINITE]),
    (BudgetPolicy, "enabled", ["false", 0, None], []),
    (Policy, "key", [1, b"k", ["k"]], ["", "k\x1b", "k\u202e"]),
    (Policy, "llm", ["false", "true", 1, None], []),
    (EscalationPolicy, "window", _NUMBERS, [0, -1, *_NOT_FINITE]),
    (EscalationPolicy, "queue_size", [*_INTS, 10.0], [0]),
    (EscalationPolicy, "sink_timeout", _NUMBERS, [0, *_NOT_FINITE]),
]

CASES = [
    pytest.param(cls, name, value, error, id=f"{cls.__name__}.{name}={value!r}"[:60])
    for cls, name, wrong_type, out_of_range in FIELDS
    for error, values in ((TypeError, wrong_type), (ValueError, out_of_range))
    for value in values
]


def test_the_table_covers_every_field() -> None:
    """A field added to a policy class without a row here fails this test."""
    listed = {(cls, name) for cls, name, _, _ in FIELDS}
    classes = {BreakerPolicy, BudgetPolicy, EscalationPolicy, RetryPolicy, TimeoutPolicy}
    every = {(cls, f.name) for cls in classes for f in attrs.fields(cls)}
    every |= {(Policy, "key"), (Policy, "llm")}  # the sub-policies: test_sub_policy_types
    assert every <= listed


@pytest.mark.parametrize(("cls", "name", "value", "error"), CASES)
def test_a_bad_value_is_refused_naming_the_field(cls, name, value, error) -> None:
    """Wrong type -> TypeError, out of range (NaN, inf) -> ValueError; `Class.field` in both."""
    with pytest.raises(error) as info:
        cls(**{name: value})
    assert f"{cls.__name__}.{name}" in str(info.value)
    assert any(advice in str(info.value) for advice in _ADVICE), "says what to do"


def test_messages_say_what_to_give() -> None:
    """The brief's example, and the hints for methods, categories, booleans and inf."""
    with pytest.raises(
        TypeError, match=r"^RetryPolicy\.max_attempts must be an int >= 1, got 'three'$"
    ):
        RetryPolicy(max_attempts="three")
    with pytest.raises(ValueError, match=r"'GETT' is not an HTTP method; did you mean 'GET'\?"):
        RetryPolicy(retry_methods=["GETT"])
    with pytest.raises(ValueError, match=r"did you mean 'server'\?"):
        RetryPolicy(retry_on=["servr"])
    with pytest.raises(TypeError, match=r"BreakerPolicy\.enabled must be a bool .*got 'false'"):
        BreakerPolicy(enabled="false")
    with pytest.raises(ValueError, match=r"or None for no limit"):
        TimeoutPolicy(deadline=math.inf)
    with pytest.raises(ValueError, match=r"set enabled to False"):
        BudgetPolicy(ratio=math.inf)


def test_valid_values_are_kept() -> None:
    """Known methods of any case (WebDAV too), category names, ints for floats, None limits."""
    retry = RetryPolicy(retry_methods=["get", "PROPFIND", "patch"], retry_on="server")
    assert retry.retry_methods == frozenset({"GET", "PROPFIND", "PATCH"})
    assert retry.retry_on == frozenset({seawall.Category.SERVER})
    assert RetryPolicy(retry_methods=[]).retry_methods == frozenset()
    assert TimeoutPolicy(attempt=None, deadline=5).deadline == 5
    assert EscalationPolicy(window=1, queue_size=1, sink_timeout=0.01).queue_size == 1


@pytest.mark.parametrize("name", ["retry", "breaker", "timeout", "budget"])
def test_sub_policy_types(name) -> None:
    """Policy(retry=...) and the others take their own class only."""
    with pytest.raises(TypeError, match=rf"Policy\({name}=\.\.\.\) takes a seawall\."):
        Policy(**{name: {"max_attempts": 2}})


# --- files: the same messages, with the location ---------------------------------


def test_toml_type_errors_are_reported_with_the_location(tmp_path) -> None:
    """`enabled = "false"` in a file is an error (it was True), as are inf and strings."""
    path = tmp_path / "seawall.toml"
    path.write_text(
        textwrap.dedent(
            """\
            [default.breaker]
            enabled = "false"
            [routes."api.x".retry]
            max_attempts = "three"
            base_delay = inf
            retry_methods = ["GET", "GETT"]
            [routes."api.x"]
            llm = 1
            """
        )
    )
    with pytest.raises(ConfigError) as info:
        load_file(path)
    problems = {p.location: p.message for p in info.value.problems}
    assert problems == {
        "default.breaker.enabled": (
            "BreakerPolicy.enabled must be a bool (True or False; "
            "true or false without quotes in a file), got 'false'"
        ),
        'routes."api.x".retry.max_attempts': (
            "RetryPolicy.max_attempts must be an int >= 1, got 'three'"
        ),
        'routes."api.x".retry.base_delay': (
            "RetryPolicy.base_delay must be a finite number of seconds >= 0, got inf"
        ),
        'routes."api.x".retry.retry_methods': (
            "RetryPolicy.retry_methods: 'GETT' is not an HTTP method; did you mean 'GET'?"
        ),
        'routes."api.x".llm': (
            "Policy.llm must be a bool (True or False; "
            "true or false without quotes in a file), got 1"
        ),
    }


def test_check_reports_toml_type_errors(capsys, tmp_path) -> None:
    """`seawall check` lists a type error at its line, and exits 1."""
    path = tmp_path / "seawall.toml"
    path.write_text('[default]\nllm = "yes"\n[default.budget]\nenabled = "false"\n')
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1] == (
        f"{path}:2: default.llm: Policy.llm must be a bool "
        "(True or False; true or false without quotes in a file), got 'yes'"
    )
    assert out[2].startswith(f"{path}:4: default.budget.enabled: BudgetPolicy.enabled must be")


def test_check_prints_deadline_none(capsys, tmp_path) -> None:
    """A valid file with no deadline prints `deadline none`, not `deadline Nones`."""
    path = tmp_path / "seawall.toml"
    path.write_text('[default.timeout]\ndeadline = "none"\nattempt = "off"\n')
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "timeout attempt none, deadline none;" in out
    assert "Nones" not in out


def test_docs_configuration_example_loads() -> None:
    """The schema block of docs/concepts/configuration.md is a valid file."""
    import pathlib
    import re
    import tomllib

    text = (pathlib.Path(__file__).parent.parent / "docs/concepts/configuration.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        load_config(tomllib.loads(block))


# --- presets: an instance replaces a section, a dict merges into it ----------------


def test_for_llm_takes_a_sub_policy_instance_as_given() -> None:
    """for_llm(retry=RetryPolicy(max_attempts=3, ...)) is exactly that RetryPolicy: no POST."""
    retry = RetryPolicy(max_attempts=3)  # every value equal to RetryPolicy's defaults
    policy = Policy.for_llm(key="model", retry=retry)
    assert policy.retry is retry
    assert policy.retry.max_attempts == 3
    assert "POST" not in policy.retry.retry_methods
    assert "PATCH" not in policy.retry.retry_methods
    timeout = TimeoutPolicy(attempt=30, deadline=120)  # TimeoutPolicy's defaults
    assert Policy.for_llm(timeout=timeout).timeout == timeout
    preset = Policy.for_llm()
    assert (policy.breaker, policy.timeout, policy.llm) == (preset.breaker, preset.timeout, True)
    assert policy.key == "model"


def test_for_llm_dict_overrides_merge_into_the_preset() -> None:
    """A dict sets exactly the fields it names (a class default too) and keeps the others."""
    policy = Policy.for_llm(retry={"retry_methods": IDEMPOTENT_METHODS}, timeout={"deadline": None})
    assert policy.retry.retry_methods == IDEMPOTENT_METHODS
    assert policy.retry.max_attempts == 4
    assert policy.timeout.attempt == 600.0
    assert policy.timeout.deadline is None
    kept = Policy.for_llm(retry={"max_attempts": 2})
    assert kept.retry == attrs.evolve(Policy.for_llm().retry, max_attempts=2)
    assert {"POST", "PATCH"} <= kept.retry.retry_methods


def test_for_llm_refuses_unknown_and_bad_overrides() -> None:
    """Typos and bad values say what is wrong."""
    with pytest.raises(TypeError, match="unknown setting 'retyr'"):
        Policy.for_llm(retyr=RetryPolicy())
    with pytest.raises(TypeError, match=r"unknown setting\(s\) max_attempt\b"):
        Policy.for_llm(retry={"max_attempt": 2})
    with pytest.raises(TypeError, match=r"takes a seawall\.RetryPolicy or a dict"):
        Policy.for_llm(retry=BreakerPolicy())
    with pytest.raises(ValueError, match=r"RetryPolicy\.max_attempts must be an int >= 1"):
        Policy.for_llm(retry={"max_attempts": 0})
    with pytest.raises(TypeError, match=r"Policy\.llm must be a bool"):
        Policy.for_llm(llm="no")


def test_preset_llm_in_a_route_starts_from_for_llm() -> None:
    """`preset = "llm"` gives Policy.for_llm() with the route's fields merged on top."""
    default, routes = load_config(
        {
            "default": {"timeout": {"attempt": 5.0}, "retry": {"max_attempts": 6}},
            "routes": {
                "api.openai.com": {"preset": "llm", "retry": {"max_attempts": 2}},
                "api.anthropic.com": {"preset": "llm"},
                "plain.example": {},
            },
        }
    )
    assert routes["api.anthropic.com"] == Policy.for_llm()
    assert routes["api.openai.com"] == Policy.for_llm(retry={"max_attempts": 2})
    assert "POST" in routes["api.openai.com"].retry.retry_methods
    assert routes["api.openai.com"].timeout.attempt == 600.0  # not the default's 5 s
    assert routes["plain.example"] == default
    assert default.retry.max_attempts == 6


def test_preset_in_default_is_inherited_by_routes() -> None:
    """A preset in [default] applies to routes that name none, under the default's fields."""
    default, routes = load_config(
        {
            "default": {"preset": "llm", "budget": {"ratio": 0.2}},
            "routes": {"a.example": {"retry": {"base_delay": 1.0}}},
        }
    )
    assert default == Policy.for_llm(budget={"ratio": 0.2})
    assert routes["a.example"] == Policy.for_llm(budget={"ratio": 0.2}, retry={"base_delay": 1.0})


def test_an_unknown_preset_is_a_located_problem() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"routes": {"api.x": {"preset": "LLM", "retry": {"max_attempts": 0}}}})
    problems = {p.location: p.message for p in info.value.problems}
    assert problems['routes."api.x".preset'] == "must be one of 'llm', got 'LLM'"
    assert 'routes."api.x".retry.max_attempts' in problems
