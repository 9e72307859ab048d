"""Every ```python block of README.md and docs/ runs, offline, so the docs cannot rot.

A block is one of three kinds, told by an HTML comment on the line before it:

- no comment: a complete program, run as it stands;
- ``<!-- include: examples/NAME.py -->``: a copy of that example, which must be
  the file byte for byte; the file is run;
- ``<!-- fragment: setup=NAME -->``: a piece of a program, run inside the
  named setup below (imports, a local upstream, an async wrapper).

Each runs in its own interpreter under ``tests/_offline.py``: no network but
127.0.0.1, proxies unset, no installed entry-point plugins, 60 s at most.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = Path(__file__).resolve().parent / "_offline.py"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(
    r"^(?:<!-- (?P<marker>[^\n]*?) -->\n)?```python\n(?P<code>.*?)^```", re.DOTALL | re.MULTILINE
)
TIMEOUT = 180  # a hang guard: a fragment imports and runs in a fresh interpreter, slowly under load

# --- the setups a fragment can name ----------------------------------------------

#: Names a ``service`` fragment may use without defining them: a local upstream at
#: ``url`` answering 200 with JSON, a ``Seawall`` ``sw`` and a ``session`` through
#: it, a ``policy``, and stand-ins for the application's own functions.
_SERVICE = '''
import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import web
from starlette.applications import Starlette
from starlette.routing import Route

import seawall
import seawall.asgi

import aiohttp as _aiohttp
import seawall as _seawall
from aiohttp import web as _web


class MyDBError(Exception):
    """An exception type of the application's database driver."""


class _DB:
    async def close(self) -> None:
        pass


async def connect():
    return _DB()


async def warm_up(http):
    return None


async def page(text):
    print("paged:", text)


def cached_or_default(key, retry_in):
    return {"cached": True}


async def lookup(user_id):
    return {"id": user_id}


async def charge(order):
    return {"charged": order}


async def _answer(request):
    return _web.json_response({"ok": True})


async def main():
    # Only underscored names before the block: an import in the block makes its
    # name local to main().
    app = _web.Application()
    app.router.add_route("*", "/{tail:.*}", _answer)
    runner = _web.AppRunner(app)
    await runner.setup()
    await _web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    policy = _seawall.Policy()
    sw = _sw = _seawall.Seawall(policy)
    user_id, order, payload = 42, {"id": 1}, {"amount": 100}
    starlette_app, aiohttp_web_app = Starlette(), _web.Application()
    try:
        async with _aiohttp.ClientSession(middlewares=[_sw.middleware()]) as session:
{body}
    finally:
        await _sw.aclose()
        await runner.cleanup()


asyncio.run(main())
'''

#: An ``llm`` fragment runs with the fake provider standing in for the OpenAI
#: API: ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` point the SDK at it.
_LLM = """
import asyncio
import os

import openai
from httpx_aiohttp.httpx2 import AiohttpTransport

import seawall
from seawall.testing import FakeProvider


async def main():
    async with FakeProvider() as fake:
        os.environ["OPENAI_BASE_URL"] = fake.url + "/v1"
        os.environ["OPENAI_API_KEY"] = "sk-test"
{body}
        assert fake.hits >= 1, "the block made no call"


asyncio.run(main())
"""

#: An ``llm_error`` fragment is the body of ``ask(client, msgs)``, called through
#: seawall against the fake provider: once while it fails (the breaker opens)
#: and once with the breaker open, which must reach the fragment's fallback.
_LLM_ERROR = """
import asyncio

import openai
from httpx_aiohttp.httpx2 import AiohttpTransport

import seawall
from seawall.testing import FakeProvider, openai_error


def fallback(retry_after):
    return {"fallback": True, "retry_after": retry_after}


async def ask(client, msgs):
{body}
    return answer


async def main():
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(failure_threshold=1, recovery_timeout=600),
    )
    sw = seawall.Seawall(policy)
    msgs = [{"role": "user", "content": "hi"}]
    async with FakeProvider() as fake, sw.session() as session:
        fake.then(openai_error(500, "server_error"))
        http = openai.DefaultAioHttpClient(transport=AiohttpTransport(client=session))
        client = openai.AsyncOpenAI(
            base_url=fake.url + "/v1", api_key="sk-test", max_retries=0, http_client=http
        )
        try:
            await ask(client, msgs)
        except openai.APIStatusError:
            pass
        else:
            raise AssertionError("the 500 was not raised")
        result = await ask(client, msgs)
        assert result["fallback"], result
        assert fake.hits == 1


asyncio.run(main())
"""

SETUPS = {"service": (_SERVICE, 12), "llm": (_LLM, 8), "llm_error": (_LLM_ERROR, 4)}


# --- finding the blocks ---------------------------------------------------------------


def blocks() -> list[tuple[str, str | None, str]]:
    """(page:line, marker, code) of every Python block."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            where = f"{page.relative_to(ROOT)}:{line}"
            found.append((where, match["marker"], match["code"]))
    return found


def program(where: str, marker: str | None, code: str) -> Path | str:
    """The file to run for a block, or the program text for a fragment."""
    if marker is None:
        return code
    kind, _, argument = marker.partition(":")
    argument = argument.strip()
    if kind == "include":
        path = ROOT / argument
        assert path.read_text(encoding="utf-8") == code, (
            f"{where} shows an old copy of {argument}; paste the file's current text"
        )
        return path
    if kind == "fragment" and argument.startswith("setup="):
        name = argument.removeprefix("setup=")
        assert name in SETUPS, f"{where}: unknown setup {name!r}; known: {sorted(SETUPS)}"
        template, indent = SETUPS[name]
        return template.replace("{body}", textwrap.indent(code, " " * indent).rstrip("\n"))
    raise AssertionError(
        f"{where}: unknown marker <!-- {marker} -->; use no marker (a complete program), "
        "<!-- include: examples/FILE.py --> or <!-- fragment: setup=NAME -->"
    )


def offline_env(log: Path | None = None) -> dict[str, str]:
    """The environment of an offline run: no proxies, no entry-point plugins."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["SEAWALL_LOAD_PLUGINS"] = ""
    env.pop("OPENAI_API_KEY", None)
    env.pop("ANTHROPIC_API_KEY", None)
    if log is not None:
        env["SEAWALL_OFFLINE_LOG"] = str(log)
    return env


def run_offline(path: Path, cwd: Path, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(OFFLINE), str(path)],
        cwd=cwd,
        env=offline_env(log),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


ALL = blocks()


def test_blocks_are_found_on_every_page_that_has_them() -> None:
    """The block pattern finds every ```python fence (none is silently skipped)."""
    fences = sum(p.read_text(encoding="utf-8").count("```python\n") for p in PAGES)
    assert len(ALL) == fences
    assert len(ALL) >= 30


@pytest.mark.slow
@pytest.mark.parametrize(("where", "marker", "code"), ALL, ids=[w for w, _, _ in ALL])
def test_block_runs_offline(where: str, marker: str | None, code: str, tmp_path: Path) -> None:
    """The block (or its example file, or its fragment in its setup) exits 0, offline."""
    target = program(where, marker, code)
    if isinstance(target, str):
        path = tmp_path / "block.py"
        path.write_text(target, encoding="utf-8")
        target = path
    done = run_offline(target, tmp_path)
    assert done.returncode == 0, f"{where} failed:\n{done.stdout}\n{done.stderr}"


def test_unknown_markers_and_stale_includes_are_reported() -> None:
    """A typo in a marker or an outdated include fails with what to do."""
    with pytest.raises(AssertionError, match="unknown marker"):
        program("x.md:1", "fragmnet: setup=service", "pass\n")
    with pytest.raises(AssertionError, match="unknown setup 'nope'"):
        program("x.md:1", "fragment: setup=nope", "pass\n")
    with pytest.raises(AssertionError, match="old copy"):
        program("x.md:1", "include: examples/first_program.py", "print('old')\n")


@pytest.mark.slow
def test_the_guard_refuses_the_internet(tmp_path: Path) -> None:
    """A program that looks up a public name fails under _offline.py, and it is logged."""
    script = tmp_path / "online.py"
    script.write_text("import socket\nsocket.getaddrinfo('example.com', 443)\n", encoding="utf-8")
    log = tmp_path / "hosts"
    done = run_offline(script, tmp_path, log)
    assert done.returncode != 0
    assert "only 127.0.0.1 may be used" in done.stderr
    assert log.read_text(encoding="utf-8").split() == ["example.com"]


@pytest.mark.slow
def test_readme_first_program_shows_retries_and_the_breaker_offline(tmp_path: Path) -> None:
    """The README's first program, as it stands, retries, opens the breaker, and
    contacts nothing but 127.0.0.1."""
    first = "include: examples/first_program.py"  # the decorator's short block comes before it
    (where, marker, code) = next(b for b in ALL if b[0].startswith("README.md") and b[1] == first)
    path = program(where, marker, code)
    assert isinstance(path, Path)
    log = tmp_path / "hosts"
    done = run_offline(path, tmp_path, log)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:4] == [
        "call 1: HTTP 200",
        "call 2: HTTP 200",  # a 503, then a retry
        "call 3: HTTP 503",
        "call 4: HTTP 503",
    ]
    # One probe per recovery_timeout (30 s, jittered down by up to 20 %), however fast the
    # calls came: a traffic-sized probe (1-3 s away) could be held for and sent as call 5.
    fifth = re.fullmatch(r"call 5: CircuitOpenError, not sent \(retry in (\d+) s\)", lines[4])
    assert fifth is not None, lines[4]
    assert 23 <= int(fifth[1]) <= 30
    assert lines[5] == "7 attempts, 3 retries, breaker open"
    # The README says which part of the output changes from run to run, and how far.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    said = re.search(
        r"same on every run but for call 5's\s+wait, between (\d+) and (\d+) s", readme
    )
    assert said is not None, "the README must say call 5's wait varies"
    assert int(said[1]) - 1 <= int(fifth[1]) <= int(said[2])  # less the time calls 1-4 took
    hosts = set(log.read_text(encoding="utf-8").split())
    assert hosts == {"127.0.0.1"}


# --- docs/index.md is a map of everything -------------------------------------------


def test_index_links_every_page_and_names_every_example() -> None:
    """docs/index.md links every page under docs/ and mentions every file in examples/."""
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    links = set(re.findall(r"\]\((?!https?://)([^)#\s]+)", index))
    pages = {
        str(p.relative_to(ROOT / "docs"))
        for p in (ROOT / "docs").rglob("*.md")
        if p.name != "index.md"
    }
    assert sorted(pages - links) == [], "link these pages from docs/index.md"
    examples = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "examples").rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and "build" not in p.parts
        and ".egg-info" not in str(p)
    }
    missing = sorted(e for e in examples if f"`{e}`" not in index)
    assert missing == [], "name these examples in docs/index.md"
