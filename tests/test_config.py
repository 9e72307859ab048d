"""Configuration: validated policies, config files with every problem reported, routes."""

from __future__ import annotations

import json
import math
import re

import pytest
from yarl import URL

import seawall
from seawall import BreakerPolicy, Policy, RetryPolicy, TimeoutPolicy

from .conftest import status


@pytest.mark.parametrize(
    ("build", "error", "words"),
    [
        (
            lambda: RetryPolicy(max_attempts=0),
            ValueError,
            ["RetryPolicy.max_attempts", ">= 1, got 0"],
        ),
        (lambda: RetryPolicy(max_attempts="3"), TypeError, ["max_attempts must be an int", "'3'"]),
        (lambda: RetryPolicy(max_attempts=2.5), TypeError, ["max_attempts must be an int", "2.5"]),
        (
            lambda: RetryPolicy(base_delay=-1),
            ValueError,
            ["RetryPolicy.base_delay", ">= 0, got -1"],
        ),
        (lambda: RetryPolicy(base_delay=math.nan), ValueError, ["base_delay", "finite", "nan"]),
        (
            lambda: RetryPolicy(base_delay=5, max_delay=1),
            ValueError,
            ["RetryPolicy.max_delay=1", "base_delay=5", "raise max_delay or lower base_delay"],
        ),
        (
            lambda: RetryPolicy(backoff="fibonacci"),
            ValueError,
            ["backoff", "'fibonacci'", "'linear'"],
        ),
        (lambda: RetryPolicy(jitter="some"), ValueError, ["jitter", "got 'some'", "'equal'"]),
        (lambda: RetryPolicy(retry_on=["bogus"]), ValueError, ["'bogus'", "rate_limit"]),
        (lambda: RetryPolicy(multiplier=0.5), ValueError, ["multiplier", ">= 1, got 0.5"]),
        (lambda: BreakerPolicy(failure_rate=1.5), ValueError, ["failure_rate", "between", "1.5"]),
        (
            lambda: BreakerPolicy(window=10, minimum_calls=20),
            ValueError,
            ["BreakerPolicy.minimum_calls=20", "window=10", "lower minimum_calls or widen window"],
        ),
        (lambda: TimeoutPolicy(attempt=0), ValueError, ["attempt", "got 0", "None for no limit"]),
        (lambda: TimeoutPolicy(deadline="soon"), TypeError, ["deadline", "'soon'", "seconds"]),
        (lambda: Policy(retry=BreakerPolicy()), TypeError, ["retry=", "RetryPolicy"]),
        (lambda: Policy(budget=RetryPolicy()), TypeError, ["budget=", "BudgetPolicy"]),
        (lambda: Policy(key=""), ValueError, ["Policy.key", "non-empty", "got ''"]),
    ],
)
def test_validation_errors_name_field_value_and_fix(build, error, words) -> None:
    """A bad setting fails at construction with the field, the value and what to do."""
    with pytest.raises(error) as info:
        build()
    for word in words:
        assert word in str(info.value)


def test_retry_methods_and_retry_on_are_normalised() -> None:
    """Methods are upper-cased and categories accepted by name."""
    retry = RetryPolicy(
        retry_methods=["get", "post"], retry_on=["server", seawall.Category.NETWORK]
    )
    assert retry.retry_methods == frozenset({"GET", "POST"})
    assert retry.retry_on == frozenset({seawall.Category.SERVER, seawall.Category.NETWORK})


def test_seawall_rejects_wrong_types() -> None:
    """Seawall(policy=...) and routes values must be Policies, said plainly."""
    with pytest.raises(TypeError, match=r"seawall\.Policy"):
        seawall.Seawall(RetryPolicy(), entrypoints=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"routes\['api'\]"):
        seawall.Seawall(routes={"api": RetryPolicy()}, entrypoints=False)  # type: ignore[dict-item]


def test_routes_given_as_a_list_is_a_type_error_saying_what_routes_is() -> None:
    """Seawall(routes=[...]) says routes maps host patterns to Policies (no AttributeError)."""
    with pytest.raises(TypeError, match=r"mapping of host pattern to seawall\.Policy.*not \["):
        seawall.Seawall(routes=[("api.example.com", Policy())], entrypoints=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "instead"),
    [
        ("http://127.0.0.1:8080", "'127.0.0.1:8080'"),
        ("http://127.0.0.1", "'127.0.0.1'"),
        ("https://API.example.com/v1", "'api.example.com'"),
        ("https://api.example.com:8443/v1?x=1", "'api.example.com:8443'"),
        ("https://user:pw@api.example.com/", "'api.example.com'"),
        ("http://", "'api.example.com'"),
    ],
)
def test_a_route_written_as_a_url_is_refused_with_the_host_to_write(pattern, instead) -> None:
    """A URL as a route pattern would never match: Seawall() and from_config() refuse it."""
    with pytest.raises(ValueError, match=rf"is a URL.*write {re.escape(instead)}$"):
        seawall.Seawall(routes={pattern: Policy()}, entrypoints=False)
    with pytest.raises(seawall.ConfigError) as info:
        seawall.Seawall.from_config({"routes": {pattern: {}}}, entrypoints=False)
    (problem,) = info.value.problems
    assert problem.location == f"routes.{json.dumps(pattern)}"
    assert problem.message.endswith(f"write {instead}")


async def test_routes_without_a_scheme_still_match_hosts_and_keys() -> None:
    """The refusal is of '://' only: a host still matches, a key with a '/' still names a route."""
    four = Policy(retry=RetryPolicy(max_attempts=4))
    sw = seawall.Seawall(
        routes={"127.0.0.1": Policy(key="ip"), "search/v1": four}, entrypoints=False
    )
    assert sw.resolve(URL("http://127.0.0.1:9/"))[0] == "ip"
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionResetError("connection reset")

    with pytest.raises(ConnectionResetError):
        await sw.call(down, key="search/v1")
    assert calls == 4


def test_from_config_reports_every_problem_with_its_location() -> None:
    """Three mistakes in a config give one ConfigError listing all three, each located."""
    data = {
        "default": {"retry": {"max_attempts": 0, "jiter": "full"}},
        "routes": {"api.example.com": {"breaker": {"failure_rate": 2}}},
        "extra": {},
    }
    with pytest.raises(seawall.ConfigError) as info:
        seawall.Seawall.from_config(data, entrypoints=False)
    locations = [p.location for p in info.value.problems]
    assert "default.retry.max_attempts" in locations
    assert "default.retry.jiter" in locations
    assert 'routes."api.example.com".breaker.failure_rate' in locations
    assert "extra" in locations
    text = str(info.value)
    assert "4 problem(s)" in text
    assert "known ones" in text
    assert isinstance(info.value, ValueError)


def test_from_config_builds_default_and_routes() -> None:
    """A route starts from the default section and overrides what it names."""
    sw = seawall.Seawall.from_config(
        {
            "default": {"retry": {"max_attempts": 4}, "timeout": {"deadline": "none"}},
            "routes": {"api.example.com": {"retry": {"backoff": "constant"}, "key": "api"}},
        },
        entrypoints=False,
    )
    assert sw.policy.retry.max_attempts == 4
    assert sw.policy.timeout.deadline is None
    key, route = sw.resolve(URL("https://api.example.com/v1"))
    assert key == "api"
    assert route.retry.max_attempts == 4
    assert route.retry.backoff == "constant"


def test_from_file(tmp_path) -> None:
    """from_file reads TOML; a missing file or bad TOML is a ConfigError naming the path."""
    path = tmp_path / "seawall.toml"
    path.write_text('[default.retry]\nmax_attempts = 5\n[routes."*.internal"]\nllm = true\n')
    sw = seawall.Seawall.from_file(str(path), entrypoints=False)
    assert sw.policy.retry.max_attempts == 5
    assert sw.resolve(URL("http://db.internal/"))[1].llm
    path.write_text("[default\n")
    with pytest.raises(seawall.ConfigError, match="not valid TOML") as info:
        seawall.Seawall.from_file(str(path), entrypoints=False)
    assert str(path) in str(info.value)
    with pytest.raises(seawall.ConfigError, match="cannot be read"):
        seawall.Seawall.from_file(str(tmp_path / "missing.toml"), entrypoints=False)
    path.write_text('[default.retry]\nmax_attempts = "x"\n')
    with pytest.raises(seawall.ConfigError) as info:
        seawall.Seawall.from_file(str(path), entrypoints=False)
    assert str(path) in str(info.value)
    assert "default.retry.max_attempts" in str(info.value)


def test_routes_match_exact_wildcard_and_port() -> None:
    """Exact hosts win over wildcards; host:port patterns match only that port; else default."""
    exact, wild, port = (Policy(key=k) for k in ("exact", "wild", "port"))
    sw = seawall.Seawall(
        routes={"api.example.com": exact, "*.example.com": wild, "localhost:8080": port},
        entrypoints=False,
    )
    assert sw.resolve(URL("https://api.example.com/x"))[0] == "exact"
    assert sw.resolve(URL("https://API.Example.com/x"))[0] == "exact"
    assert sw.resolve(URL("https://eu.example.com/x"))[0] == "wild"
    assert sw.resolve(URL("http://localhost:8080/"))[0] == "port"
    key, policy = sw.resolve(URL("http://localhost:9090/"))
    assert key == "http://localhost:9090"
    assert policy is sw.policy
    assert sw.resolve(URL("https://example.org"))[0] == "https://example.org:443"


async def test_a_route_key_shares_state_and_its_policy_applies(upstream, make_session) -> None:
    """A route with its own key and policy: state under that key, its max_attempts used."""
    up, server = upstream
    up.default = status(503)
    route = Policy(key="local", retry=RetryPolicy(max_attempts=2))
    sw = seawall.Seawall(routes={f"127.0.0.1:{server.port}": route}, entrypoints=False)
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 503
    assert up.hits == 2
    assert list(sw.health()["keys"]) == ["local"]


async def test_call_uses_the_route_named_by_key() -> None:
    """sw.call(key=...) picks the route policy of that exact name."""
    sw = seawall.Seawall(
        routes={"search": Policy(retry=RetryPolicy(max_attempts=4))}, entrypoints=False
    )
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionResetError("connection reset")

    with pytest.raises(ConnectionResetError):
        await sw.call(down, key="search")
    assert calls == 4
