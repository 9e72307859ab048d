"""The examples run and do what they say, and the docs show them as they are."""

from __future__ import annotations

import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import seawall
from seawall.plugins import hookspecs

from .conftest import status

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs"

HOOKS = sorted(
    name
    for name, function in vars(hookspecs).items()
    if name.startswith("seawall_") and inspect.isfunction(function)
)


def load(relative: str) -> ModuleType:
    """Import an example file by path, as a module of its own."""
    path = EXAMPLES / relative
    name = "example_" + relative.removesuffix(".py").replace("/", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the quickstart ----------------------------------------------------------


async def test_quickstart_retries_opens_the_breaker_and_recovers(capsys) -> None:
    """The quickstart shows retries, a CircuitOpenError, recovery, and ends healthy."""
    health = await load("quickstart.py").main()
    out = capsys.readouterr().out
    assert "retry in" in out
    assert out.count("no more retries: max_attempts used up") == 3  # the outage's failed calls
    assert "breaker closed -> open after 3 failed calls in a row" in out
    assert "caller got CircuitOpenError" in out
    assert "the upstream saw 0 requests from that last call" in out
    assert "breaker open -> half_open" in out
    assert "breaker half_open -> closed" in out
    assert health["status"] == "healthy"
    (detail,) = health["keys"].values()
    assert detail["state"] == "closed"
    assert detail["rejections"] == {"breaker": 2}
    # 2 flaky calls (2 attempts each), 3 failed calls (3 each), 2 rejected, probe and one more.
    assert (detail["requests"], detail["attempts"]) == (9, 2 * 2 + 3 * 3 + 2)
    assert detail["transitions"] == {
        "closed->open": 1,
        "open->half_open": 1,
        "half_open->closed": 1,
    }


@pytest.mark.slow
def test_quickstart_runs_as_the_readme_says() -> None:
    """`python examples/quickstart.py` from the repo root finishes well within 10 s."""
    result = subprocess.run(
        [sys.executable, "examples/quickstart.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,  # a hang guard, not the "within 10 s" (a loaded machine is slower)
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "health: healthy" in result.stdout
    assert result.stderr == ""


# --- the custom classifier ------------------------------------------------------


async def test_custom_classifier_retries_what_the_gateway_code_allows(capsys) -> None:
    """processor_unavailable and a busy 200 are retried; card_declined is not."""
    results = await load("custom_classifier.py").main()
    assert results["processor_unavailable, then paid"]["status"] == 200
    assert results["processor_unavailable, then paid"]["hits"] == 2
    assert results["card_declined"] == {
        "status": 402,
        "hits": 1,
        "body": {"error": {"code": "card_declined"}},
    }
    assert results["200 busy, then paid"]["body"]["status"] == "paid"
    assert results["200 busy, then paid"]["hits"] == 2
    assert "card_declined: HTTP 402" in capsys.readouterr().out


def test_custom_classifier_defers_for_other_hosts_and_bad_bodies() -> None:
    """The gateway classifier returns None elsewhere and CLIENT for an unreadable 402."""
    from yarl import URL

    module = load("custom_classifier.py")
    plugin = module.GatewayClassifier("127.0.0.1")
    elsewhere = seawall.Outcome(key="k", url=URL("http://example.com/"), status=402)
    assert plugin.seawall_classify(elsewhere) is None
    garbled = seawall.Outcome(
        key="k",
        url=URL("http://127.0.0.1/"),
        status=402,
        body=b"{not json",
        content_type="application/json",
    )
    assert plugin.seawall_classify(garbled).category is seawall.Category.CLIENT


def test_custom_backoff_follows_the_schedule_and_defers_otherwise() -> None:
    """GatewayBackoff waits on its schedule for gateway codes and defers for the rest."""
    module = load("custom_classifier.py")
    backoff = module.GatewayBackoff()
    gateway = seawall.Classification(category=seawall.Category.SERVER, reason="gateway: x")
    other = seawall.Classification(category=seawall.Category.SERVER, reason="HTTP 503")
    assert [backoff.seawall_backoff(n, gateway) for n in (1, 2, 3, 9)] == [0.05, 0.1, 0.2, 0.2]
    assert backoff.seawall_backoff(1, other) is None


# --- the hook examples ------------------------------------------------------------


async def test_hook_seawall_classify_example(capsys) -> None:
    """The read-after-write plugin retries two 404s and the caller gets the 200."""
    assert await load("hooks/seawall_classify.py").main() == [404, 404, 200]
    assert "HTTP 200" in capsys.readouterr().out


async def test_hook_seawall_backoff_example() -> None:
    """The backoff plugin makes seawall wait what X-RateLimit-Reset-After said."""
    assert await load("hooks/seawall_backoff.py").main() == [0.25]


def test_hook_seawall_backoff_example_defers_on_bad_headers() -> None:
    """A missing, malformed or negative header defers to the built-in strategy."""
    plugin = load("hooks/seawall_backoff.py").RateLimitResetAfter()
    limited = seawall.Classification(category=seawall.Category.RATE_LIMIT)
    for headers in ({}, {"X-RateLimit-Reset-After": "soon"}, {"X-RateLimit-Reset-After": "-1"}):
        outcome = seawall.Outcome(key="k", status=429, headers=headers)
        assert plugin.seawall_backoff(outcome, limited) is None


async def test_hook_seawall_escalate_example() -> None:
    """The webhook sink receives one redacted incident for a failed authentication."""
    received = await load("hooks/seawall_escalate.py").main()
    assert len(received) == 1
    assert received[0]["text"].startswith("[HIGH] authentication on billing-api")
    assert received[0]["incident"]["category"] == "authentication"
    assert "sk-test" not in str(received)


async def test_hook_seawall_event_example() -> None:
    """The counting plugin sees both attempts, the retry and the finished call."""
    counts = await load("hooks/seawall_event.py").main()
    assert counts == {
        ("users", "attempt", "timeout"): 1,
        ("users", "retry", "timeout"): 1,
        ("users", "attempt", "success"): 1,
        ("users", "call", "success"): 1,
    }


async def test_hook_seawall_configure_example() -> None:
    """The pattern added on configure makes a quota error final after one call."""
    result = await load("hooks/seawall_configure.py").main()
    assert result["calls"] == 1
    assert any("quota_exhausted" in note for note in result["notes"])
    assert result["healthy"] is True


@pytest.mark.slow
def test_examples_pass_mypy_strict() -> None:
    """Every example type-checks under mypy --strict, as users' code would."""
    files = sorted(
        str(p.relative_to(ROOT)) for p in [*EXAMPLES.glob("*.py"), *EXAMPLES.glob("hooks/*.py")]
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- docs stay true to the code --------------------------------------------------

_INCLUDE = re.compile(r"<!-- include: (?P<path>\S+) -->\n```python\n(?P<code>.*?)```", re.DOTALL)


def test_every_hook_has_a_page_an_example_and_a_test() -> None:
    """Each hookspec has docs/hooks/<hook>.md titled with its signature, and a tested example."""
    assert HOOKS == [
        "seawall_backoff",
        "seawall_classify",
        "seawall_configure",
        "seawall_escalate",
        "seawall_event",
    ]
    tests = {name for name in globals() if name.startswith("test_hook_")}
    for hook in HOOKS:
        args = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
        page = (DOCS / "hooks" / f"{hook}.md").read_text(encoding="utf-8")
        assert page.splitlines()[0] == f"# `{hook}({args})`"
        assert f"<!-- include: examples/hooks/{hook}.py -->" in page
        assert f"test_hook_{hook}_example" in tests


def test_included_examples_match_their_files() -> None:
    """A code block marked as included from examples/ is that file, byte for byte."""
    pages = sorted(DOCS.rglob("*.md"))
    found = 0
    for page in pages:
        for match in _INCLUDE.finditer(page.read_text(encoding="utf-8")):
            source = (ROOT / match["path"]).read_text(encoding="utf-8")
            assert match["code"] == source, (
                f"{page.relative_to(ROOT)} shows an old copy of {match['path']}; "
                "paste the file's current text into the code block"
            )
            found += 1
    assert found >= len(HOOKS)


def test_relative_links_in_docs_and_readme_resolve() -> None:
    """Every relative Markdown link in docs/ and README.md points to an existing file."""
    link = re.compile(r"\]\((?!https?://|#|mailto:)(?P<target>[^)#\s]+)")
    broken = []
    for page in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        for match in link.finditer(page.read_text(encoding="utf-8")):
            if not (page.parent / match["target"]).exists():
                broken.append(f"{page.relative_to(ROOT)}: {match['target']}")
    assert broken == []


# --- the README ----------------------------------------------------------------


def readme_blocks() -> list[str]:
    """The Python code blocks of README.md, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


async def test_readme_service_example_runs(upstream, capsys, monkeypatch) -> None:
    """The README's service fragment, run against a local upstream that fails once:
    the caller sees the 200 the retry got, then sw.call's result, then "healthy"."""
    import textwrap

    import aiohttp

    monkeypatch.setenv("SEAWALL_LOAD_PLUGINS", "")  # no installed entry-point plugins
    up, server = upstream
    up.then(status(503))
    code = readme_blocks()[2]  # [0]: the decorator on the first screen, [1]: the first program
    assert "session.get(url)" in code
    source = "async def block(url):\n" + textwrap.indent(code, "    ")
    namespace: dict[str, object] = {"seawall": seawall, "aiohttp": aiohttp}
    exec(compile(source, "README.md", "exec"), namespace)
    await namespace["block"](str(server.make_url("/")))
    assert capsys.readouterr().out.split() == ["200", "{'id':", "42}", "healthy"]
    assert up.hits == 2


def test_readme_plugin_example_registers(monkeypatch) -> None:
    """The README's plugin example is a valid plugin that answers 0 s for /health only."""
    monkeypatch.setenv("SEAWALL_LOAD_PLUGINS", "")  # no installed entry-point plugins
    from yarl import URL

    namespace: dict[str, object] = {"seawall": seawall}
    exec(compile(readme_blocks()[3], "README.md", "exec"), namespace)
    sw = namespace["sw"]
    assert isinstance(sw, seawall.Seawall)
    (info,) = sw.list_plugins()
    assert info.hooks == ("seawall_backoff",)
    plugin = namespace["NoWaitForHealthChecks"]()
    health = seawall.Outcome(key="k", url=URL("http://h/health"))
    other = seawall.Outcome(key="k", url=URL("http://h/other"))
    assert plugin.seawall_backoff(health) == 0.0
    assert plugin.seawall_backoff(other) is None
