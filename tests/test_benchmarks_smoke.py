"""The benchmark scenarios still run (tiny mode); timings are never asserted."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._redis import REDIS_SERVER

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"

#: The peers in overhead.py's decision-cost table (the `bench` extra, which the
#: `test` extra includes): each one installed must have its row.
PEERS = ("purgatory", "tenacity", "stamina")
#: The sync forms' peers (fix/sync), and the module each needs.
SYNC_PEERS = {"purgatory_sync": "purgatory", "tenacity_sync": "tenacity", "stamina_sync": "stamina"}
ROWS = {
    "purgatory": "| bare purgatory breaker (",
    "tenacity": "| tenacity (`@tenacity.retry(",
    "stamina": "| stamina (`@stamina.retry(",
}


def _stdout(script: str, *args: str, timeout: float = 180) -> str:
    """What ``python benchmarks/<script> <args>`` printed; it must exit 0."""
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _run(script: str, *args: str) -> dict[str, object]:
    out = _stdout(script, "--quick", "--json", *args)
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_overhead_runs_and_reports_every_variant() -> None:
    """overhead.py --quick reports throughput, CPU and decision cost for its three variants."""
    result = _run("overhead.py")
    e2e = result["end_to_end"]
    assert isinstance(e2e, dict)
    assert set(e2e["rps"]) == {"bare", "passthrough", "seawall"}
    assert set(e2e["added_cpu_us_vs_passthrough"]) == {"bare", "passthrough", "seawall"}
    cost = result["decision_cost"]
    assert isinstance(cost, dict)
    assert {"bare", "run", "path", "run_minus_bare"} <= set(cost)
    assert "| seawall |" in str(result["markdown"])
    installed = [peer for peer in PEERS if importlib.util.find_spec(peer) is not None]
    for peer in installed:
        assert {peer, f"{peer}_minus_fn"} <= set(cost), peer
        assert ROWS[peer] in str(result["markdown"]), peer
    assert "Same run, host-independent: `sw.call(fn)` adds" in str(result["markdown"])
    assert {"call_sync", "call_sync_minus_fn_sync", "protect_sync_minus_fn_sync"} <= set(cost)
    assert "Same run: `sw.call_sync(fn)` adds" in str(result["markdown"])
    construction = result["construction_cost"]
    assert isinstance(construction, dict)
    assert set(construction) == {"first", "later", "no_entrypoints"}
    assert "`Seawall()` construction: first in the process" in str(result["markdown"])


def _decision_only_without(*peers: str) -> subprocess.CompletedProcess[str]:
    """overhead.py --quick --decision-only --json in a process where ``peers`` cannot be
    imported (``sys.modules[name] = None`` makes ``import name`` raise ImportError)."""
    code = (
        "import sys\n"
        f"for name in {peers!r}: sys.modules[name] = None\n"
        f"sys.path.insert(0, {str(BENCH)!r})\n"
        "import overhead\n"
        "sys.exit(overhead.main(['--quick', '--decision-only', '--json']))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=False
    )


@pytest.mark.slow
def test_a_peer_not_installed_is_left_out_with_a_note() -> None:
    """Without stamina the decision-cost table leaves its row out and says why; the other
    rows and the ratio to purgatory are still there. Without any peer: still no crash."""
    done = _decision_only_without("stamina")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    cost, markdown = result["decision_cost"], result["markdown"]
    assert "stamina" not in cost
    assert "stamina_minus_fn" not in cost
    assert {"call", "call_minus_fn", "purgatory_minus_fn", "tenacity_minus_fn"} <= set(cost)
    assert "call_vs_purgatory" in cost
    assert "stamina is not installed, so its row is left out" in markdown
    assert "@stamina.retry" not in markdown
    done = _decision_only_without(*PEERS)
    assert done.returncode == 0, done.stderr
    markdown = json.loads(done.stdout.strip().splitlines()[-1])["markdown"]
    assert "No peer is installed" in markdown
    for peer in PEERS:
        assert f"{peer} is not installed" in markdown


def test_the_decision_cases_run_without_suspending() -> None:
    """instructions.py drives each decision-cost loop without an event loop (as under
    callgrind): every case, the peers installed included, finishes without suspending,
    and the child names them (instructions.py reads those names)."""
    out = _stdout("instructions.py", "--decision-client", "3")
    names = json.loads(out.strip().splitlines()[-1])
    ours = ["bare", "run", "handler", "path", "fn", "call", "call_key", "method", "call_method"]
    assert names[:10] == [*ours, "protect"]
    installed = [peer for peer in PEERS if importlib.util.find_spec(peer) is not None]
    assert names[10 : 10 + len(installed)] == installed
    rest = names[10 + len(installed) :]
    sync = ["fn_sync", "call_sync", "call_sync_key", "using_sync", "protect_sync", "retry_sync"]
    assert rest[:6] == sync  # the sync forms (fix/sync), then their installed peers
    sync_installed = [
        peer for peer, module in SYNC_PEERS.items() if importlib.util.find_spec(module)
    ]
    assert rest[6:] == sync_installed


@pytest.mark.slow
@pytest.mark.parametrize("client", ["httpx", "httpx-sync"])
def test_overhead_measures_the_httpx_clients(client: str) -> None:
    """overhead.py --client httpx(-sync) --quick: bare httpx, a pass-through transport and
    seawall's transport, every request answered 200."""
    result = _run("overhead.py", "--client", client, "--server", "raw")
    assert result["client"] == client
    e2e = result["end_to_end"]
    assert isinstance(e2e, dict)
    assert set(e2e["rps"]) == {"bare", "passthrough", "seawall"}
    assert e2e["failures"] == {"bare": 0, "passthrough": 0, "seawall": 0}
    markdown = str(result["markdown"])
    assert "| pass-through transport |" in markdown
    assert "sw.httpx_transport(" in markdown


@pytest.mark.slow
def test_peers_runs_every_scenario_for_every_variant() -> None:
    """peers.py --quick fills all four scenario tables and seawall's target list."""
    result = _run("peers.py")
    rows = result["results"]
    assert isinstance(rows, dict)
    assert set(rows) == {"success", "outage", "ratelimit", "errors"}
    variants = {
        "bare",
        "passthrough",
        "cookbook",
        "aiohttp_retry",
        "tenacity",
        "stamina",
        "purgatory_tenacity",
        "seawall",
        "seawall_whatif",
    }
    modes = {"seawall_classic", "seawall_adaptive"}  # the breaker modes, in the outage only
    for scenario, table in rows.items():
        assert set(table) == (variants | modes if scenario == "outage" else variants), scenario
    assert {"outage_load", "peak_after", "success_after_recovery", "success_once_recovered"} <= set(
        rows["outage"]["seawall"]
    )
    assert {"success", "amplification", "trips"} <= set(rows["errors"]["seawall"])
    assert {"429_per_success"} <= set(rows["ratelimit"]["seawall"])
    assert len(result["targets"]) == 9  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("script", "rows"),
    [
        ("observe_call.py", ["observe_call:"]),
        ("timers.py", ["watchdog", "asyncio.timeout", "deadline"]),
    ],
)
def test_timing_targets_moved_from_the_unit_tests_still_run(script: str, rows: list[str]) -> None:
    """Each timing target runs in its tiny mode and reports a verdict per row (never asserted)."""
    lines = _stdout(script, "--quick").splitlines()
    for row in rows:
        (line,) = [line for line in lines if line.startswith(row)]
        assert line.rstrip().endswith(("ok", "ABOVE TARGET", "MISSED")), line


def test_the_lift_benchmark_reports_both_phases_for_every_client() -> None:
    """lift.py --quick: a row per client, each with both phases' figures (never asserted)."""
    clients = {"seawall", "held", "bare", "fleet", "fleet-held"}
    if not os.path.exists(REDIS_SERVER):  # the fleet clients need one (.ci/run installs it)
        clients -= {"fleet", "fleet-held"}
    # lift.py bounds itself: a stuck process prints every thread's stack and exits (about
    # 225 s at most here; 40 s is usual), so a hang shows where it waits, not a timeout.
    out = _stdout("lift.py", "--quick", "--clients", ",".join(sorted(clients)), timeout=300)
    lines = out.splitlines()
    table = lines[2 : lines.index("each round (limited: per s, 429s/ok; lifted: ok):")]
    rows = {line.split()[0]: line.split()[1:] for line in table}
    assert set(rows) == clients
    assert all(len(figures) == 6 and figures[0].endswith("%") for figures in rows.values())


def test_the_pacing_matrix_reports_every_cell() -> None:
    """pacing_matrix.py --json: a share and a 429 count for each bucket and way of calling
    (stalls only where the bucket refills fast enough for one to matter); never asserted."""
    cells = json.loads(_stdout("pacing_matrix.py", "--json"))["cells"]
    assert len(cells) == 11 * 4 - 6
    assert all(0.0 < share <= 1.2 and refused >= 0.0 for share, refused in cells.values())


def test_the_rounds_benchmark_reports_a_row() -> None:
    """rounds.py --quick: one row of a round's key selection time and states looked at."""
    (row,) = _stdout("rounds.py", "--quick").splitlines()[2:]
    assert len(row.split()) == 6, row


def test_llm_costs_reports_every_answer_kind() -> None:
    """llm_costs.py --quick: a row per answer kind for each table (figures never asserted)."""
    lines = _stdout("llm_costs.py", "--quick").splitlines()
    for kind in ("openai-1k", "openai-20k", "openai-200k", "anthropic-5k"):
        assert len([line for line in lines if line.startswith(kind)]) == 2
    assert len([line for line in lines if line.startswith("sse ")]) == 1
    assert [line.split()[0] for line in lines if line.startswith("sse-")] == ["sse-40", "sse-400"]
