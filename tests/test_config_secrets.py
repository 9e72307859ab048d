"""A secret pasted into a route pattern never leaves through a config message or the CLI.

Route patterns are hosts, but users paste URLs there, query and all
(``routes."https://api.example.com/?api_key=..."``), or an API key where a
``sw.call`` key belongs. The pattern is echoed by ``seawall check`` (problems,
warnings, and the summary of a valid file), by ``ConfigError`` and by
``Seawall(routes=...)``: each redacts it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import seawall
from seawall.cli import main
from seawall.config import ConfigError, load_config

SECRET = "Zq7Xk2Lm9Pw4Rt6Y"

#: (the pattern, whether `seawall check` refuses it)
PATTERNS = [
    (f"https://api.example.com/?api_key={SECRET}", True),  # a URL: refused
    (f"https://me:{SECRET}@api.example.com/", True),  # with userinfo
    (f"api.example.com/v1?token={SECRET}", False),  # a '/': a warning
    (f"sk-{SECRET}", False),  # an API key as an sw.call key: valid
]


def check(capsys: pytest.CaptureFixture[str], tmp_path: Path, pattern: str) -> tuple[int, str]:
    path = tmp_path / "policy.toml"
    path.write_text(f'[routes."{pattern}"]\nretry.max_attempts = 2\n', encoding="utf-8")
    code = main(["check", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize(("pattern", "refused"), PATTERNS)
def test_seawall_check_never_prints_a_secret_in_a_route_pattern(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pattern: str, refused: bool
) -> None:
    code, out = check(capsys, tmp_path, pattern)
    assert code == (1 if refused else 0)
    assert SECRET not in out
    assert "***" in out  # the pattern is still shown, as far as it is no secret
    assert ("problem(s)" in out) is refused


@pytest.mark.parametrize("pattern", [p for p, refused in PATTERNS if refused])
def test_config_errors_and_routes_never_carry_a_secret(pattern: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"routes": {pattern: {"retry": {"max_attempts": 2}}}})
    assert SECRET not in str(info.value)
    with pytest.raises(ValueError) as raised:
        seawall.Seawall(routes={pattern: seawall.Policy()}, entrypoints=False)
    assert SECRET not in str(raised.value)


def test_a_route_that_is_no_policy_never_carries_its_secret() -> None:
    pattern = f"sk-{SECRET}"
    with pytest.raises(TypeError) as info:
        seawall.Seawall(routes={pattern: {"api_key": SECRET}}, entrypoints=False)  # type: ignore[dict-item]
    assert SECRET not in str(info.value)
    assert "must be a seawall.Policy" in str(info.value)


@given(
    secret=st.text(
        alphabet="abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789",
        min_size=12,
        max_size=40,
    )
)
def test_any_key_like_query_value_in_a_route_url_is_redacted(secret: str) -> None:
    pattern = f"https://api.example.com/v1?key={secret}"
    with pytest.raises(ConfigError) as info:
        load_config({"routes": {pattern: {}}})
    assert secret not in str(info.value)
