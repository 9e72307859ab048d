"""The ``seawall`` command: demo, plugins, check, classify, and the ``-m`` entry points."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

import seawall
from seawall.cli import main
from seawall.cli.classify import build_exception
from seawall.cli.demo import DemoConfig, Progress, Variant, held
from seawall.cli.demo_stats import summarize, waiting_per_bucket
from seawall.cli.demo_upstream import REQUEST, START, ScriptedUpstream, script
from seawall.cli.demo_view import _PlainProgress, lag_warning, plain_table, progress_display

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


# --- demo ---------------------------------------------------------------------


def _demo_json(*argv: str) -> dict[str, Any]:
    """``seawall demo --json ...``'s output, parsed."""
    seawall.testing.set_testing(False)  # the demo's waits are its subject
    out = io.StringIO()
    real = sys.stdout
    sys.stdout = out
    try:
        assert main(["demo", "--json", *argv]) == 0
    finally:
        sys.stdout = real
        seawall.testing.set_testing(True)
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """The default scenario of ``make demo`` (20 s, 8 clients x 10/s), on simulated time.

    Simulated time (``seawall.cli.demo_clock``) moves only while every task
    waits, so these numbers do not depend on how loaded the machine is.
    """
    png = tmp_path_factory.mktemp("demo") / "demo.png"
    argv = ["--simulated", "--seed", "1"]
    if HAS_MATPLOTLIB:
        argv += ["--plot", str(png)]
    return _demo_json(*argv), png


def test_demo_phases_each_measure_one_thing(demo_run) -> None:
    """Steady, errors, outage, recovery, rate limit, steady: the peaks are taken apart."""
    result, _ = demo_run
    assert [p["name"] for p in result["phases"]] == [
        "healthy",
        "errors",
        "calm",
        "outage",
        "recovered",
        "rate_limited",
        "unlimited",
    ]
    assert result["config"]["simulated_time"] is True
    for variant in result["variants"].values():
        assert variant["logical_requests"] == 20 * 8 * 10
        assert variant["success_rate_by_phase"]["healthy"] == 1.0
        assert variant["load_by_phase"]["healthy"] == 1.0
        assert variant["peak_load_after_rate_limit_vs_steady"] is not None
        assert variant["loop_lag_max_s"] == 0.0  # simulated time: the loop is never late


def test_demo_shows_seawall_sparing_the_dead_upstream(demo_run) -> None:
    """During the outage seawall sends a small fraction of the naive loop's calls."""
    result, _ = demo_run
    naive, guarded = result["variants"]["naive"], result["variants"]["seawall"]
    assert guarded["outage_calls"] * 5 < naive["outage_calls"]
    assert guarded["outage_load_vs_steady"] < 0.5 < 3 < naive["outage_load_vs_steady"]
    assert guarded["load_by_phase"]["outage"] < 0.5 < 3 < naive["load_by_phase"]["outage"]
    assert guarded["amplification"] < naive["amplification"]


def test_demo_shows_recovery_and_respect_for_rate_limits(demo_run) -> None:
    """seawall's breaker opens and closes again; it sends fewer 429s per success."""
    result, _ = demo_run
    naive, guarded = result["variants"]["naive"], result["variants"]["seawall"]
    recovery = result["config"]["seawall_recovery_timeout_s"]
    assert guarded["first_success_after_outage_s"] is not None
    assert guarded["first_success_after_outage_s"] <= recovery + 0.1
    assert guarded["success_rate_by_phase"]["unlimited"] >= 0.9
    assert guarded["rate_limited_429s_per_success"] < naive["rate_limited_429s_per_success"]
    assert guarded["most_callers_waiting"] > 0
    states = [t["to"] for t in guarded["breaker_transitions"]]
    assert "open" in states
    assert states[-1] == "closed"
    assert naive["breaker_transitions"] == []


def test_demo_recovers_without_loss_and_shows_the_held_callers(demo_run) -> None:
    """Issue 16: as safe as a breaker during the outage, as complete as retries after it."""
    result, _ = demo_run
    naive, guarded = result["variants"]["naive"], result["variants"]["seawall"]
    after = guarded["success_rate_by_phase"]["recovered"]
    assert after >= 0.99
    assert after >= naive["success_rate_by_phase"]["recovered"]
    assert guarded["outage_load_vs_steady"] <= 0.05
    assert guarded["most_callers_held"] > 0  # read from health()'s held
    assert naive["most_callers_held"] is None


def test_demo_shows_seawall_no_worse_than_the_naive_loop_on_any_row(demo_run) -> None:
    """Issue 16: at least as many successes in every phase, no more load in any.

    Both sides draw the same errors and start their requests at the same
    moments, so a row differs only where the policies do.
    """
    result, _ = demo_run
    naive, guarded = result["variants"]["naive"], result["variants"]["seawall"]
    for phase, rate in naive["success_rate_by_phase"].items():
        assert guarded["success_rate_by_phase"][phase] >= rate, phase
    for phase, load in naive["load_by_phase"].items():
        assert guarded["load_by_phase"][phase] <= load, phase
    # The errors' retries cost what the naive loop's cost: same luck, same attempts.
    assert guarded["load_by_phase"]["errors"] == naive["load_by_phase"]["errors"] > 1.2
    for peak in ("peak_load_after_outage_vs_steady", "peak_load_after_rate_limit_vs_steady"):
        assert guarded[peak] <= 1.25 < 1.5 <= naive[peak], peak


async def test_the_two_demo_upstreams_fail_the_same_attempts_of_a_request() -> None:
    """The errors phase draws from (seed, request, attempt): both sides get the same luck."""
    phases = script(2000)  # an errors phase of 300 s: a slow host stays inside it
    errors = next(p for p in phases if p.name == "errors")
    ups = [ScriptedUpstream(phases, seed=5, limit=1.0, window=1.0) for _ in range(3)]
    ups[2] = ScriptedUpstream(phases, seed=6, limit=1.0, window=1.0)
    urls = [await up.serve() for up in ups]
    try:
        async with aiohttp.ClientSession() as session:
            for up in ups:  # the errors phase, now
                up.start(asyncio.get_running_loop().time() - errors.start - 0.5)
            seen: list[dict[tuple[int, int], int]] = [{}, {}, {}]
            # The second upstream gets the calls in another order (as a side whose
            # requests and retries interleave differently would send them).
            orders = [range(40), range(39, -1, -1), range(40)]
            for url, statuses, order in zip(urls, seen, orders, strict=True):
                for attempt in range(3):
                    for request in order:
                        headers = {START: str(errors.start + 0.5), REQUEST: f"0.{request}"}
                        async with session.get(url, headers=headers) as resp:
                            statuses[request, attempt] = resp.status
    finally:
        for up in ups:
            await up.close()
    assert seen[0] == seen[1]  # one seed: the n-th call of a request fails alike
    assert seen[0] != seen[2]  # another seed: other luck
    fails = list(seen[0].values()).count(500)
    assert 0.15 < fails / 120 < 0.45  # about ERROR_RATE of 120 calls
    assert set(seen[0].values()) == {200, 500}


def test_demo_on_simulated_time_repeats_itself() -> None:
    """The same seed gives the same run: no number depends on the machine's speed."""
    argv = ("--simulated", "--duration", "4", "--clients", "3", "--rate", "10", "--seed", "3")
    first, second = _demo_json(*argv), _demo_json(*argv)
    assert first["variants"] == second["variants"]


def test_demo_in_real_time_runs_the_same_scenario() -> None:
    """``make demo``'s real-time path: every request is made and counted (no timing asserted)."""
    result = _demo_json("--duration", "0.6", "--clients", "2", "--rate", "10")
    assert result["config"]["simulated_time"] is False
    assert [v["logical_requests"] for v in result["variants"].values()] == [12, 12]


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed")
def test_demo_plot_writes_a_png(demo_run) -> None:
    """``--plot FILE`` writes a PNG image of the timeline."""
    _, png = demo_run
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size < 200_000


def test_demo_table_in_plain_text(demo_run) -> None:
    """Without rich the table is plain aligned text with a row per metric."""
    result, _ = demo_run
    table = plain_table(result)
    assert [cell.strip() for cell in table.splitlines()[0].split("|")[2:4]] == ["naive", "seawall"]
    for row in ("calls during the outage", "load: outage", "after the limit", "429s per success"):
        assert row in table


def _variant(hits: list[tuple[float, int, float]], starts: list[float]) -> Variant:
    upstream = ScriptedUpstream(script(20), seed=0, limit=1.0, window=1.0)
    upstream.hits = hits
    variant = Variant("seawall", upstream)
    variant.requests = [(t, t, True) for t in starts]
    return variant


def test_demo_peaks_are_taken_in_their_own_phase() -> None:
    """A burst right after the rate limit is not counted as the after-outage peak."""
    steady = [(i * 0.1 + 0.01, 200, i * 0.1 + 0.01) for i in range(200)]  # one per 100 ms
    herd = [(18.05, 200, 17.95)] * 9  # 10 calls in the first bucket after the limit (18-18.1 s)
    variant = _variant(steady + herd, [t for t, _, _ in steady])
    summary = summarize(variant, DemoConfig())
    assert summary["peak_load_after_outage_vs_steady"] == 1.0
    assert summary["peak_load_after_rate_limit_vs_steady"] == 10.0


def test_demo_load_rows_count_calls_where_their_request_started() -> None:
    """Calls of requests that waited out the rate limit are that phase's load, not the next's.

    Counted by when the upstream saw them, the 9 late calls made the lifted
    limit's requests look 1.3x as costly as they were (the row said 1.07x vs
    the naive loop's 1.03x on ``--seed 7``).
    """
    steady = [(i * 0.1 + 0.01, 200, i * 0.1 + 0.01) for i in range(200)]
    late = [(18.05, 200, 17.95)] * 9  # started in the rate-limited phase (14-18 s)
    variant = _variant(steady + late, [t for t, _, _ in steady] + [17.95] * 9)
    loads = summarize(variant, DemoConfig())["load_by_phase"]
    assert loads["unlimited"] == 1.0
    assert loads["rate_limited"] == 1.0  # 40 + 9 requests, 40 + 9 calls


def test_a_real_time_run_on_a_busy_host_says_so() -> None:
    """A loop seconds behind turns answers into timeouts for seawall alone: the table says so."""

    def result(lag: float, simulated: bool = False) -> dict[str, Any]:
        side = {"loop_lag_max_s": lag}
        return {"config": {"simulated_time": simulated}, "variants": {"a": side, "b": side}}

    note = lag_warning(result(2.87))
    assert note is not None
    assert "2.87s behind" in note
    assert "--simulated" in note
    assert lag_warning(result(0.02)) is None
    assert lag_warning(result(2.87, simulated=True)) is None


def test_held_callers_shown_only_when_reported() -> None:
    """The breaker's held callers are summed over keys when health() has them, else None."""

    def sw_with(*reports: dict[str, int]) -> Any:
        health = SimpleNamespace(by_key={str(i): r for i, r in enumerate(reports)})
        return SimpleNamespace(health=lambda: health)

    assert held(sw_with({"requests": 3}, {"requests": 1})) is None
    assert held(sw_with({"held": 2}, {"held": 5}, {"requests": 1})) == 7
    variant = _variant([], [])
    variant.waiting = [(0.01, 3, None), (0.06, 5, None), (0.12, 1, None)]
    assert waiting_per_bucket(variant, 0.2) == {"inside": [5, 1, 0], "held": None}
    variant.waiting = [(0.01, 3, 0), (0.06, 5, 4)]
    assert waiting_per_bucket(variant, 0.1)["held"] == [4, 0]


def test_progress_is_silent_off_a_terminal_and_plain_lines_otherwise() -> None:
    """No progress when stdout is not a TTY; the plain display prints periodic lines."""
    _context, tick = progress_display(io.StringIO(), quiet=False)
    assert tick is None
    out = io.StringIO()
    plain = _PlainProgress(out, every=1.0)
    phases = script(20)
    for elapsed in (0.0, 0.5, 1.2):
        plain(Progress(elapsed, 20.0, phases[0], ()))
    assert out.getvalue().count("\n") == 2
    assert "healthy" in out.getvalue()


def test_demo_rejects_a_bad_duration(capsys) -> None:
    """A duration that is not a positive number is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--duration", "0"])
    assert exc.value.code == 2
    assert "must be above 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--duration", "nan"],
        ["--duration", "inf"],
        ["--duration=-inf"],
        ["--rate", "nan"],
        ["--rate", "Infinity"],
    ],
)
def test_demo_rejects_a_number_that_is_not_finite(capsys, argv) -> None:
    """nan and inf are usage errors (exit 2), as -1 is, not a traceback from the run."""
    with pytest.raises(SystemExit) as exc:
        main(["demo", *argv])
    assert exc.value.code == 2
    value = argv[-1].split("=")[-1]
    assert f"{value!r} must be a finite number above 0" in capsys.readouterr().err


# --- plugins ------------------------------------------------------------------


def test_plugins_lists_builtins_and_their_hooks(capsys) -> None:
    """``seawall plugins --json`` lists each built-in plugin with its hooks."""
    code, out = run(capsys, "plugins", "--json")
    assert code == 0
    by_name = {p["name"]: p for p in json.loads(out)}
    assert by_name["seawall.builtin.http"]["hooks"] == ["seawall_classify"]
    assert by_name["seawall.builtin.backoff"]["builtin"] is True
    code, out = run(capsys, "plugins", "--hook", "seawall_backoff")
    assert code == 0
    assert "seawall.builtin.backoff" in out
    assert "seawall.builtin.http" not in out


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway installed distribution with a ``seawall`` entry point."""
    (tmp_path / "seawall_fake_cli.py").write_text(
        "from seawall import hookimpl\n\n@hookimpl\ndef seawall_event(event):\n    return None\n"
    )
    info = tmp_path / "seawall_fake_cli-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: seawall-fake-cli\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[seawall]\nfakecli = seawall_fake_cli\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_plugins_names_entry_point_distribution_and_version(capsys, fake_dist) -> None:
    """An entry-point plugin is listed with its distribution's name and version."""
    code, out = run(capsys, "plugins", "--json")
    assert code == 0
    fake = next(p for p in json.loads(out) if p["name"] == "fakecli")
    assert fake == {
        "name": "fakecli",
        "hooks": ["seawall_event"],
        "builtin": False,
        "distribution": "seawall-fake-cli",
        "version": "0.3",
    }
    code, out = run(capsys, "plugins")
    assert "fakecli  (seawall-fake-cli 0.3)" in out


@pytest.fixture(params=["typo", "import"])
def broken_dist(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An installed distribution whose plugin is broken: a misspelt hook, or a failing import."""
    source = {
        "typo": "import seawall\n\n@seawall.hookimpl\ndef seawall_clasify(outcome): ...\n",
        "import": "import no_such_module_here\n",
    }[request.param]
    (tmp_path / "seawall_broken_cli.py").write_text(source)
    info = tmp_path / "seawall_broken_cli-0.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: seawall-broken-cli\nVersion: 0.2\n"
    )
    (info / "entry_points.txt").write_text("[seawall]\nbrokencli = seawall_broken_cli\n")
    monkeypatch.delenv("SEAWALL_LOAD_PLUGINS", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield request.param
    sys.modules.pop("seawall_broken_cli", None)


def test_a_broken_plugin_is_one_error_line_in_plugins_and_classify(capsys, broken_dist) -> None:
    """``seawall classify`` reports a broken plugin as ``seawall plugins`` does: no traceback."""
    code, listed = run(capsys, "plugins")
    assert code == 1
    assert listed.startswith("error: ")
    assert "brokencli" in listed
    code, classified = run(capsys, "classify", "--status", "500")
    assert code == 1
    assert classified == listed
    assert ("seawall_clasify" if broken_dist == "typo" else "no_such_module_here") in classified


# --- check --------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "seawall.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_check_accepts_a_good_file_and_summarises_it(capsys, tmp_path) -> None:
    """A valid file exits 0 and prints each effective policy."""
    path = write(
        tmp_path,
        """
        [default.retry]
        max_attempts = 4
        [routes."api.openai.com".breaker]
        recovery_timeout = 10
        """,
    )
    code, out = run(capsys, "check", path)
    assert code == 0
    assert "OK, a default policy and 1 route(s)" in out
    assert "default: retry 4 attempts" in out
    assert "api.openai.com: retry 4 attempts" in out
    assert "5 failures / 10s" in out


def test_check_lists_every_problem_with_its_line_and_fix(capsys, tmp_path) -> None:
    """Each problem is reported once, at its line, with what to do; exit 1."""
    path = write(
        tmp_path,
        """\
        [default.retry]
        max_attempts = 0
        backoff = "exponentail"

        [default.breaker]
        failure_treshold = 5

        [routes."api.example.com".retry]
        base_delay = -1
        """,
    )
    code, out = run(capsys, "check", path)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].endswith("4 problem(s)")
    assert lines[1] == (
        f"{path}:2: default.retry.max_attempts: RetryPolicy.max_attempts must be an int >= 1, got 0"
    )
    assert lines[2].startswith(f"{path}:3: default.retry.backoff:")
    assert "must be one of 'exponential'" in lines[2]
    assert "did you mean 'exponential'?" in lines[2]
    assert lines[3].startswith(f"{path}:6: default.breaker.failure_treshold: unknown setting")
    assert "failure_threshold" in lines[3]
    assert lines[4].startswith(f'{path}:9: routes."api.example.com".retry.base_delay:')
    assert len(lines) == 5


def test_check_refuses_a_route_written_as_a_url(capsys, tmp_path) -> None:
    """A URL as a route pattern is an error at its line, naming the host to write; exit 1."""
    path = write(
        tmp_path,
        """\
        [default.retry]
        max_attempts = 2

        [routes."https://api.example.com:8443/v1"]
        key = "example"
        """,
    )
    code, out = run(capsys, "check", path)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].endswith("1 problem(s)")
    assert lines[1].startswith(f'{path}:4: routes."https://api.example.com:8443/v1": ')
    assert lines[1].endswith("write 'api.example.com:8443'")


def test_check_warns_of_a_route_with_a_path(capsys, tmp_path) -> None:
    """A pattern with a '/' (no scheme) can only be an sw.call key: a warning at its line."""
    path = write(
        tmp_path,
        """\
        [routes."api.example.com"]
        key = "api"

        [routes."127.0.0.1:8080/v1".retry]
        max_attempts = 2
        """,
    )
    code, out = run(capsys, "check", path)
    assert code == 0
    assert "OK, a default policy and 2 route(s)" in out
    (warning,) = [line for line in out.splitlines() if "warning" in line]
    assert warning.startswith(f'{path}:4: warning: routes."127.0.0.1:8080/v1": ')
    assert "only match an sw.call key" in warning
    assert warning.endswith("write '127.0.0.1:8080'")


def test_check_lists_an_unknown_section_in_the_files_order_at_its_line(capsys, tmp_path) -> None:
    """An unknown top-level section is reported where it is in the file, with its line."""
    path = write(
        tmp_path,
        """\
        [default.retry]
        max_attempts = 0

        [defaults.retry]
        max_attempts = 2

        [routes."x"]
        preset = "llmm"
        """,
    )
    code, out = run(capsys, "check", path)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].endswith("3 problem(s)")
    assert lines[1].startswith(f"{path}:2: default.retry.max_attempts:")
    assert lines[2].startswith(f"{path}:4: defaults: unknown section")
    assert lines[3].startswith(f"{path}:8: routes.x.preset:")


def test_check_sample_in_docs_cli_md_is_what_check_prints(capsys, tmp_path, monkeypatch) -> None:
    """docs/cli.md's `seawall check` sample: its file, checked now, prints exactly its output."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    block = page.split("```console\n$ cat seawall.toml\n", 1)[1].split("```\n", 1)[0]
    toml, rest = block.split("$ seawall check seawall.toml\n")
    shown, status = rest.split("$ echo $?\n")
    monkeypatch.chdir(tmp_path)
    Path("seawall.toml").write_text(toml, encoding="utf-8")
    code, out = run(capsys, "check", "seawall.toml")
    assert out == shown
    assert f"{code}\n" == status


def test_check_reports_invalid_toml_with_line_and_column(capsys, tmp_path) -> None:
    """A TOML syntax error is reported with its line and column; exit 1."""
    path = write(tmp_path, "[default\nx = 1\n")
    code, out = run(capsys, "check", path)
    assert code == 1
    assert "not valid TOML" in out
    assert "line 1, column" in out


def test_check_reports_a_missing_file(capsys, tmp_path) -> None:
    """A path that does not exist is named, with what to give instead; exit 1."""
    code, out = run(capsys, "check", str(tmp_path / "nope.toml"))
    assert code == 1
    assert "nope.toml: cannot be read: no such file" in out


def test_check_says_a_directory_is_a_directory(capsys, tmp_path) -> None:
    """A directory is named as one, not as a missing file; exit 1."""
    code, out = run(capsys, "check", str(tmp_path))
    assert code == 1
    assert out == f"{tmp_path}: is a directory; give the path of a TOML policy file in it\n"


# --- classify -----------------------------------------------------------------


def test_classify_429_waits_what_retry_after_says(capsys) -> None:
    """A 429 with Retry-After: 5 is rate-limited, retried after 5 s, per the http plugin."""
    code, out = run(capsys, "classify", "--status", "429", "--header", "Retry-After: 5", "--json")
    assert code == 0
    answer = json.loads(out)
    assert answer["classification"]["category"] == "rate_limit"
    assert answer["classified_by"] == "seawall.builtin.http"
    assert answer["retry"] is True
    assert answer["wait"]["seconds"] == 5
    assert answer["wait"]["decided_by"] == "Retry-After"
    assert answer["breaker"].startswith("not counted; starts a cooldown")


def test_classify_exception_shows_backoff_range(capsys) -> None:
    """A reset connection is NETWORK; the wait is within the jittered backoff range."""
    code, out = run(
        capsys, "classify", "--exception", "ConnectionResetError: peer reset", "--attempt", "2"
    )
    assert code == 0
    assert "classification: network" in out
    assert "decided by: seawall.builtin.exceptions" in out
    assert "full jitter in [0, 0.2]s" in out
    assert "decided by seawall.builtin.backoff" in out


def test_classify_says_why_not(capsys, tmp_path) -> None:
    """Each refusal names its reason: not idempotent, last attempt, too long a Retry-After."""
    _, out = run(capsys, "classify", "--status", "503", "--method", "POST")
    assert "no, POST is not idempotent" in out
    _, out = run(capsys, "classify", "--status", "503", "--attempt", "3")
    assert "no, attempt 3 was the last of max_attempts=3" in out
    _, out = run(capsys, "classify", "--status", "503", "--header", "Retry-After: 600")
    assert "above retry_after_max=60" in out
    _, out = run(capsys, "classify", "--status", "404")
    assert "no, not retryable" in out


def test_classify_uses_the_route_policy_from_config(capsys, tmp_path) -> None:
    """--config and --url pick the route's policy (here: 5 attempts)."""
    path = write(tmp_path, '[routes."api.example.com".retry]\nmax_attempts = 5\n')
    argv = ["classify", "--status", "503", "--attempt", "3", "--config", path]
    _, out = run(capsys, *argv, "--url", "https://api.example.com/v1")
    assert "retry after attempt 3: yes" in out
    _, out = run(capsys, *argv, "--url", "https://other.example.com/v1")
    assert "retry after attempt 3: no" in out


def test_classify_unknown_exception_is_retried_once(capsys, tmp_path) -> None:
    """An unknown exception name becomes an UNKNOWN error, retried at most once."""
    path = write(tmp_path, '[default.retry]\nretry_on = ["unknown", "server"]\n')
    argv = ["classify", "--config", path, "--exception"]
    _, out = run(capsys, *argv, "WeirdSdkError: something odd")
    assert "classification: unknown (unknown error: WeirdSdkError)" in out
    assert "retry after attempt 1: yes" in out
    _, out = run(capsys, *argv, "WeirdSdkError: odd", "--attempt", "2")
    assert "no, unknown is retried at most 1 time(s)" in out


def test_classify_usage_errors(capsys) -> None:
    """No --status nor --exception, or a malformed header, exit 2 with a hint."""
    code, out = run(capsys, "classify")
    assert code == 2
    assert "needs --status" in out
    code, out = run(capsys, "classify", "--status", "500", "--header", "no colon")
    assert code == 2
    assert "'Name: value'" in out


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--status", "-1"], "'-1' is not an HTTP status code; give one from 100 to 599"),
        (["--status", "999"], "'999' is not an HTTP status code"),
        (["--status", "99"], "'99' is not an HTTP status code"),
        (["--status", "5xx"], "'5xx' is not an HTTP status code"),
        (["--status", "500", "--exception", "X: y"], "not allowed with argument --status"),
        (["--exception", "X: y", "--status", "500"], "not allowed with argument --exception"),
        (["--status", "500", "--url", "not a url"], "'not a url' is not an absolute URL"),
        (["--status", "500", "--url", "/v1/chat"], "give its scheme and host"),
        (["--status", "500", "--url", "https://"], "is not an absolute URL"),
    ],
)
def test_classify_refuses_what_it_cannot_mean(capsys, argv, said) -> None:
    """A status outside 100-599, a URL without scheme and host, or both --status and
    --exception is a usage error (exit 2) saying what to give."""
    with pytest.raises(SystemExit) as exc:
        main(["classify", *argv])
    assert exc.value.code == 2
    assert said in capsys.readouterr().err


def test_classify_accepts_the_edges_of_the_status_range(capsys) -> None:
    """100 and 599 are status codes; 599 is a server error."""
    assert run(capsys, "classify", "--status", "100")[0] == 0
    code, out = run(capsys, "classify", "--status", "599", "--url", "http://127.0.0.1:9/x")
    assert code == 0
    assert "(key http://127.0.0.1:9)" in out
    assert "classification: server" in out


def test_classify_url_error_does_not_echo_credentials_or_secrets(capsys) -> None:
    """A malformed --url is echoed without its userinfo and with key-like values redacted."""
    with pytest.raises(SystemExit):
        main(["classify", "--status", "500", "--url", "me:hunter2@host/x?api_key=sk-SECRET"])
    err = capsys.readouterr().err
    assert "hunter2" not in err
    assert "sk-SECRET" not in err


def test_classify_says_what_to_do_with_a_missing_body_file(capsys, tmp_path) -> None:
    """A --body file that cannot be read names the option and the fix, not a raw [Errno 2]."""
    missing = tmp_path / "missing.json"
    code, out = run(capsys, "classify", "--status", "500", "--body", str(missing))
    assert code == 1
    assert out == (
        f"error: --body {missing}: cannot be read (No such file or directory); "
        "give the path of a file that holds the response body\n"
    )


def test_build_exception_finds_aiohttp_and_builtin_classes() -> None:
    """Known names give instances of the real classes, even with awkward constructors."""
    exc = build_exception("ClientConnectorError: connection refused")
    assert isinstance(exc, aiohttp.ClientConnectorError)
    assert str(exc) == "connection refused"
    assert isinstance(build_exception("aiohttp.ServerDisconnectedError: bye"), aiohttp.ClientError)
    assert type(build_exception("TimeoutError: slow")) is TimeoutError
    unknown = build_exception("QuotaError: out of credits")
    assert type(unknown).__name__ == "QuotaError"
    assert str(unknown) == "out of credits"


# --- python -m ------------------------------------------------------------------


@pytest.mark.slow
def test_python_m_seawall_and_seawall_plugins(tmp_path) -> None:
    """``python -m seawall`` runs the command; ``python -m seawall.plugins`` prints JSON."""
    found = subprocess.run(
        [sys.executable, "-m", "seawall", "classify", "--status", "503"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert found.returncode == 0, found.stderr
    assert "classification: server" in found.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "seawall.plugins", "--all", "--hook", "seawall_classify"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    names = {p["name"] for p in json.loads(listed.stdout)}
    assert names == {
        "seawall.builtin.http",
        "seawall.builtin.exceptions",
        "seawall.builtin.llm",
        "seawall.builtin.patterns",
    }
    plain = subprocess.run(
        [sys.executable, "-m", "seawall.plugins"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert all(not p["builtin"] for p in json.loads(plain.stdout))


def test_a_reader_that_goes_away_gets_no_traceback() -> None:
    """`seawall plugins | head -1`: the pipe closes before seawall writes; it exits 1, quietly."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "seawall", "plugins"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()  # before the interpreter has even imported seawall
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
