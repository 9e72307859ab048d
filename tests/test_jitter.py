"""Proportional jitter (``jitter="proportional"``, ±``jitter_factor``): range, cap, config."""

from __future__ import annotations

import pytest
from yarl import URL

import seawall
from seawall import backoff as maths
from seawall.config import ConfigError, load_config, policy_from_dict
from seawall.plugins.builtin import backoff

_SAMPLES = 2000


def _draws(retry: seawall.RetryPolicy, attempt: int) -> list[float]:
    return [backoff.seawall_backoff(attempt, retry) for _ in range(_SAMPLES)]


def test_proportional_jitter_defaults_to_ten_percent_either_side() -> None:
    """Chosen without a factor: delays spread over [0.9 d, 1.1 d] around the ceiling d."""
    retry = seawall.RetryPolicy(jitter="proportional", base_delay=1.0, max_delay=100.0)
    assert retry.jitter_factor is None
    assert retry.proportion == 0.1
    samples = _draws(retry, 3)  # exponential: ceiling 4 s
    assert all(3.6 <= s <= 4.4 for s in samples)
    assert min(samples) < 3.7
    assert max(samples) > 4.3
    assert any(s > 4.0 for s in samples)  # unlike full/equal jitter, it can exceed the ceiling


def test_proportional_jitter_takes_a_factor() -> None:
    """``jitter_factor=0.5`` spreads over [0.5 d, 1.5 d]."""
    retry = seawall.RetryPolicy(
        jitter="proportional", jitter_factor=0.5, backoff="constant", base_delay=2.0
    )
    samples = _draws(retry, 1)
    assert all(1.0 <= s <= 3.0 for s in samples)
    assert min(samples) < 1.2
    assert max(samples) > 2.8


def test_proportional_jitter_never_passes_the_cap() -> None:
    """At the cap the range is cut at ``max_delay``: jitter never pushes a delay above it."""
    retry = seawall.RetryPolicy(
        jitter="proportional", jitter_factor=0.2, base_delay=1.0, max_delay=5.0
    )
    assert maths.bounds(maths.ceiling(10, retry), retry) == (4.0, 5.0)
    samples = _draws(retry, 10)  # ceiling capped at 5 s
    assert all(4.0 <= s <= 5.0 for s in samples)
    assert max(samples) > 4.9


def test_a_factor_without_proportional_jitter_is_refused() -> None:
    """A factor that would be ignored is an error that says what to do."""
    with pytest.raises(
        ValueError, match=r"jitter_factor=0\.2 applies only to jitter='proportional'"
    ):
        seawall.RetryPolicy(jitter="full", jitter_factor=0.2)
    with pytest.raises(ValueError, match=r"set jitter='proportional' or leave jitter_factor out"):
        seawall.RetryPolicy(jitter_factor=0.2)


@pytest.mark.parametrize(
    ("value", "kind", "text"),
    [
        (0, ValueError, "above 0 and at most 1, got 0"),
        (1.5, ValueError, "above 0 and at most 1, got 1.5"),
        (float("nan"), ValueError, "got nan"),
        ("0.1", TypeError, "got '0.1'"),
        (True, TypeError, "got True"),
    ],
)
def test_bad_factors_are_refused(value: object, kind: type[Exception], text: str) -> None:
    with pytest.raises(kind, match=r"RetryPolicy\.jitter_factor must be a finite number") as info:
        seawall.RetryPolicy(jitter="proportional", jitter_factor=value)  # type: ignore[arg-type]
    assert text in str(info.value)


def test_proportional_jitter_from_toml(tmp_path) -> None:
    """TOML takes the same names; its mistakes are reported with their location."""
    path = tmp_path / "seawall.toml"
    path.write_text(
        '[default.retry]\njitter = "proportional"\njitter_factor = 0.25\n'
        '[routes."api.example.com".retry]\nmax_attempts = 2\n'
    )
    sw = seawall.Seawall.from_file(str(path), entrypoints=False)
    assert sw.policy.retry.jitter == "proportional"
    assert sw.policy.retry.proportion == 0.25
    _key, route = sw.resolve(URL("https://api.example.com/x"))
    assert route.retry.proportion == 0.25  # routes inherit [default]

    with pytest.raises(ConfigError) as info:
        policy_from_dict({"retry": {"jitter": "equal", "jitter_factor": 0.3}})
    text = str(info.value)
    assert "retry.jitter_factor" in text
    assert "applies only to jitter='proportional'" in text
    with pytest.raises(ConfigError, match=r"retry\.jitter_factor: .*above 0 and at most 1"):
        policy_from_dict({"retry": {"jitter": "proportional", "jitter_factor": 2}})


def test_cli_classify_shows_the_proportional_range() -> None:
    """``seawall classify`` reports the range the wait is drawn from, cap included."""
    from seawall.cli.classify import explain  # the command's own code, not a copy

    sw = seawall.Seawall(
        seawall.Policy(
            retry=seawall.RetryPolicy(
                jitter="proportional", base_delay=1.0, max_delay=100.0, max_attempts=5
            )
        ),
        entrypoints=False,
    )
    answer = explain(sw, url="https://api.example.com/x", status=503, attempt=2)
    assert answer["wait"]["backoff_range"] == [pytest.approx(1.8), pytest.approx(2.2)]
    assert 1.8 <= answer["wait"]["seconds"] <= 2.2


def test_a_route_choosing_another_jitter_drops_the_inherited_factor() -> None:
    """The factor belongs to proportional jitter: a route that picks another jitter sheds it."""
    default, routes = load_config(
        {
            "default": {"retry": {"jitter": "proportional", "jitter_factor": 0.3}},
            "routes": {
                "full.example.com": {"retry": {"jitter": "full"}},
                "same.example.com": {"retry": {"max_attempts": 5}},
                "wider.example.com": {"retry": {"jitter": "proportional", "jitter_factor": 0.5}},
                "again.example.com": {"retry": {"jitter": "proportional"}},
            },
        }
    )
    assert default.retry.proportion == 0.3
    assert routes["full.example.com"].retry.jitter == "full"
    assert routes["full.example.com"].retry.jitter_factor is None
    assert routes["same.example.com"].retry.proportion == 0.3
    assert routes["wider.example.com"].retry.proportion == 0.5
    assert routes["again.example.com"].retry.proportion == 0.3  # still proportional: kept
