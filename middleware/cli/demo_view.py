"""How ``seawall demo`` shows itself: live progress, the comparison table, the plot.

``rich`` (the ``demo`` extra) and ``matplotlib`` (``plot``) are imported only here and
only when used; without rich the progress is a plain line every few seconds
(none when stdout is not a terminal) and the table is plain text.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TextIO

from seawall.cli.demo import Progress
from seawall.cli.demo_upstream import PHASES

__all__ = [
    "LAG_WARNING",
    "PHASE_LABELS",
    "ROWS",
    "lag_warning",
    "plain_table",
    "plot",
    "progress_display",
    "rich_available",
    "table_rows",
]


def rich_available() -> bool:
    """True when ``rich`` can be imported."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _num(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}{unit}"
    return f"{value}{unit}"


def _phase_rate(name: str) -> Callable[[dict[str, Any]], str]:
    return lambda s: _pct(s["success_rate_by_phase"][name])


def _phase_load(name: str) -> Callable[[dict[str, Any]], str]:
    return lambda s: _num(s["load_by_phase"][name], "x")


#: The script's phases, (name, label), in the script's order (a row may say more).
PHASE_LABELS = tuple(
    (name, {"recovered": "after the outage"}.get(name, label)) for name, label, _share in PHASES
)

#: (label, how to render one variant's summary) in table order.
ROWS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("logical requests", lambda s: _num(s["logical_requests"])),
    ("upstream calls", lambda s: _num(s["upstream_calls"])),
    ("amplification (calls / request)", lambda s: _num(s["amplification"], "x")),
    ("calls during the outage", lambda s: _num(s["outage_calls"])),
    ("success rate", lambda s: _pct(s["success_rate"])),
    *((f"  success: {label}", _phase_rate(name)) for name, label in PHASE_LABELS),
    ("load (upstream calls / request)", lambda _s: ""),
    *((f"  load: {label}", _phase_load(name)) for name, label in PHASE_LABELS),
    ("outage load vs steady state", lambda s: _num(s["outage_load_vs_steady"], "x")),
    ("first success after the outage", lambda s: _num(s["first_success_after_outage_s"], " s")),
    (
        "sustained success after the outage",
        lambda s: _num(s["sustained_success_after_outage_s"], " s"),
    ),
    (
        "peak 100 ms load after the outage vs steady",
        lambda s: _num(s["peak_load_after_outage_vs_steady"], "x"),
    ),
    (
        "peak 100 ms load after the limit vs steady",
        lambda s: _num(s["peak_load_after_rate_limit_vs_steady"], "x"),
    ),
    ("429s per success (rate-limited)", lambda s: _num(s["rate_limited_429s_per_success"])),
    ("most callers waiting at once", lambda s: _num(s["most_callers_waiting"])),
    ("most callers held by the breaker", lambda s: _num(s["most_callers_held"])),
    ("breaker transitions", lambda s: _transitions(s["breaker_transitions"])),
    ("most event-loop lag (the host)", lambda s: _num(s["loop_lag_max_s"], " s")),
)

#: Event-loop lag beyond which a real-time run measures the host more than the upstream.
LAG_WARNING = 0.1


def lag_warning(result: dict[str, Any]) -> str | None:
    """A note for a real-time run whose event loop fell far behind (a busy host), else ``None``."""
    lags = [v.get("loop_lag_max_s") or 0.0 for v in result["variants"].values()]
    lag = max(lags, default=0.0)
    if lag <= LAG_WARNING or result["config"]["simulated_time"]:
        return None
    return (
        f"note: the event loop fell up to {lag:.2f}s behind (a busy host). Both sides "
        "share the loop, but seawall counts an answer later than its attempt limit or "
        "deadline as a failure and its breaker trips on a run of them, so these numbers "
        "measure the host, not the upstream. Run with --simulated for numbers that do "
        "not depend on the machine.\n"
    )


def _transitions(items: list[dict[str, Any]]) -> str:
    if not items:
        return "-"
    opened = sum(1 for item in items if item["to"] == "open")
    return f"{len(items)} ({opened} to open)"


def table_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """The comparison table as strings: a header row, then one row per metric."""
    names = list(result["variants"])
    rows: list[tuple[str, ...]] = [("", *names)]
    for label, render in ROWS:
        rows.append((label, *(render(result["variants"][name]) for name in names)))
    return rows


def plain_table(result: dict[str, Any]) -> str:
    """The comparison table as aligned plain text (a Markdown table)."""
    rows = table_rows(result)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for number, row in enumerate(rows):
        cells = [
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if number == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def print_table(result: dict[str, Any], out: TextIO, *, fancy: bool) -> None:
    """Print the table with rich when ``fancy`` (and rich is there), else plain."""
    if fancy and rich_available():
        from rich.console import Console
        from rich.table import Table

        rows = table_rows(result)
        table = Table(title="naive retry loop vs seawall")
        table.add_column("")
        for name in rows[0][1:]:
            table.add_column(name, justify="right")
        for row in rows[1:]:
            table.add_row(*row)
        Console(file=out).print(table)
        return
    out.write(plain_table(result) + "\n")


def _line(progress: Progress) -> str:
    phase = progress.phase.label if progress.phase is not None else "finishing"
    parts = [f"{progress.elapsed:5.1f}/{progress.duration:g}s  {phase:<13}"]
    for v in progress.variants:
        ok = sum(ok for _s, _e, ok in v.requests)
        state = f" breaker {v.breaker}" if v.name == "seawall" else ""
        parts.append(f"{v.name}: {len(v.upstream.hits)} calls, {ok}/{v.started} ok{state}")
    return "  ".join(parts)


class _PlainProgress:
    """A line every ``every`` seconds."""

    def __init__(self, out: TextIO, every: float = 2.0) -> None:
        self.out = out
        self.every = every
        self._next = 0.0

    def __call__(self, progress: Progress) -> None:
        if progress.elapsed >= self._next:
            self.out.write(_line(progress) + "\n")
            self.out.flush()
            self._next = progress.elapsed + self.every


class _RichProgress(AbstractContextManager["_RichProgress"]):
    """A rich ``Live`` panel with a progress bar and per-variant counts."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        self.task = self.bar.add_task("starting", total=100)
        self.live = Live(self.bar, console=Console(file=out), refresh_per_second=8)
        self.lines: list[str] = []

    def __enter__(self) -> _RichProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def __call__(self, progress: Progress) -> None:
        phase = progress.phase.label if progress.phase is not None else "finishing"
        done = min(100.0, 100 * progress.elapsed / progress.duration)
        detail = _line(progress).split("  ", 2)[-1]
        self.bar.update(self.task, completed=done, description=f"{phase:<13} {detail}")


def progress_display(
    out: TextIO, *, quiet: bool
) -> tuple[AbstractContextManager[Any], Callable[[Progress], None] | None]:
    """A context to run in and a tick callback: rich on a terminal, plain lines otherwise."""
    if quiet or not out.isatty():
        return nullcontext(), None
    if rich_available():
        display = _RichProgress(out)
        return display, display
    return nullcontext(), _PlainProgress(out)


def plot(result: dict[str, Any], timelines: dict[str, Any], path: str) -> None:
    """Write a PNG: upstream calls per 100 ms for both variants, the callers waiting
    inside seawall (and held by its breaker, when reported), breaker state, phases."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bucket = timelines["bucket"]
    fig, (calls_ax, wait_ax, state_ax) = plt.subplots(
        3, 1, figsize=(9, 5.8), sharex=True, height_ratios=(3, 1.4, 1), dpi=90
    )
    colours = {"naive": "#d62728", "seawall": "#1f77b4"}
    for name, counts in timelines["calls"].items():
        xs = [i * bucket for i in range(len(counts))]
        calls_ax.step(xs, counts, where="post", label=name, color=colours.get(name), lw=1.2)
    waiting = timelines.get("waiting") or {}
    xs = [i * bucket for i in range(len(waiting.get("inside") or []))]
    if xs:
        wait_ax.step(
            xs, waiting["inside"], where="post", color=colours["seawall"], lw=1, label="waiting"
        )
    if xs and waiting.get("held") is not None:
        wait_ax.step(xs, waiting["held"], where="post", color="#9467bd", lw=1, label="held")
    wait_ax.set_ylabel("seawall\ncallers", fontsize=8)
    if xs:
        wait_ax.legend(loc="upper left", fontsize=7)
    shades = {  # the healthy phases stay white
        "errors": "#fff4d6",
        "outage": "#fde0dc",
        "recovered": "#e3f4e3",
        "rate_limited": "#e8e0f8",
    }
    for phase in result["phases"]:
        shade = shades.get(phase["name"], "#ffffff")
        for ax in (calls_ax, wait_ax, state_ax):
            ax.axvspan(phase["start_s"], phase["end_s"], color=shade, lw=0)
        calls_ax.text(
            (phase["start_s"] + phase["end_s"]) / 2,
            1.01,
            phase["label"],
            transform=calls_ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    calls_ax.set_ylabel(f"upstream calls / {int(bucket * 1000)} ms")
    calls_ax.legend(loc="upper left", fontsize=8)
    levels = {"closed": 0, "half_open": 1, "open": 2}
    steps = timelines["breaker"]
    end = result["config"]["duration_s"]
    xs = [t for t, _ in steps] + [end]
    ys = [levels.get(s, 0) for _, s in steps] + [levels.get(steps[-1][1], 0)]
    state_ax.step(xs, ys, where="post", color=colours["seawall"], lw=1.2)
    state_ax.set_yticks([0, 1, 2], ["closed", "half-open", "open"], fontsize=8)
    state_ax.set_ylabel("breaker", fontsize=8)
    state_ax.set_xlabel("seconds")
    state_ax.set_xlim(0, end)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
