"""The ``seawall`` command: ``demo``, ``plugins``, ``check`` and ``classify``.

Every subcommand returns an exit code: 0 when all is well, 1 when it found a
problem (a bad configuration, a plugin that does not load), 2 for a usage
error (argparse's convention).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from seawall._body import ERROR_BODY_LIMIT
from seawall._patterns import route_with_path
from seawall.cli.classify import (
    build_exception,
    explain,
    parse_header,
    parse_method,
    parse_status,
    parse_url,
)
from seawall.cli.demo import DemoConfig
from seawall.cli.demo import run as run_demo_loop
from seawall.cli.demo_stats import (
    BUCKET,
    breaker_timeline,
    calls_per_bucket,
    report,
    waiting_per_bucket,
)
from seawall.cli.demo_view import (
    lag_warning,
    plot,
    print_table,
    progress_display,
    rich_available,
)
from seawall.cli.locate import find_line
from seawall.cli.terminal import Out, Safe, terminal_safe
from seawall.config import ConfigError, load_config
from seawall.config_file import FileProblem, read_data
from seawall.engine import Seawall
from seawall.plugins.manager import PluginError, make_manager
from seawall.redact import redact_text

__all__ = ["build_parser", "main"]


# --- seawall demo -------------------------------------------------------------


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            out.write("--plot needs matplotlib: pip install 'seawall[plot]'\n")
            return 1
    config = DemoConfig(
        duration=args.duration,
        clients=args.clients,
        rate=args.rate,
        seed=args.seed,
        simulated=args.simulated,
    )
    fancy = out.isatty() and not args.json
    if not args.json:
        out.write(
            f"seawall demo: {config.clients} clients x {config.rate:g} requests/s for "
            f"{config.duration:g}s{' (simulated time)' if config.simulated else ''}, "
            "a naive retry loop and seawall side by side\n"
        )
        out.flush()
    display, tick = progress_display(out, quiet=args.json)
    with display:
        variants = run_demo_loop(config, tick)
    result = report(variants, config)
    if args.plot:
        timelines = {
            "bucket": BUCKET,
            "calls": {v.name: calls_per_bucket(v, config.duration) for v in variants},
            "breaker": breaker_timeline(variants[1]),
            "waiting": waiting_per_bucket(variants[1], config.duration),
        }
        plot(result, timelines, args.plot)
    if args.json:
        out.write(json.dumps(result, indent=2) + "\n")
        return 0
    print_table(result, out, fancy=fancy and rich_available())
    if (note := lag_warning(result)) is not None:
        out.write(note)
    if args.plot:
        out.write(f"timeline written to {args.plot}\n")
    return 0


# --- seawall plugins ----------------------------------------------------------


def plugin_infos(*, include_builtin: bool = True, hook: str | None = None) -> list[dict[str, Any]]:
    """Every registered plugin as a dict (built-ins, entry points), optionally by hook."""
    return _plugin_report(include_builtin=include_builtin, hook=hook)[0]


def _plugin_report(
    *, include_builtin: bool = True, hook: str | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The plugins as dicts, and the warnings about plugins left out."""
    pm = make_manager()
    infos = pm.list_plugins(include_builtin=include_builtin)
    return [i.as_dict() for i in infos if hook is None or hook in i.hooks], pm.warnings


def _plugins(args: argparse.Namespace, out: Out) -> int:
    try:
        infos, warnings = _plugin_report(include_builtin=True, hook=args.hook)
    except PluginError as exc:
        out.write(f"error: {exc}\n")
        return 1
    for warning in warnings:
        sys.stderr.write(terminal_safe(f"warning: {warning}\n"))
    if args.json:
        out.write(json.dumps(infos, indent=2) + "\n")
        return 0
    for info in infos:
        origin = "built-in" if info["builtin"] else "plugin"
        if info["distribution"]:
            origin = f"{info['distribution']} {info['version']}"
        out.write(f"{info['name']}  ({origin})\n    hooks: {', '.join(info['hooks']) or '-'}\n")
    if not infos:
        out.write("no plugins" + (f" implement {args.hook}" if args.hook else "") + "\n")
    return 0


# --- seawall check ------------------------------------------------------------


def _own_problems(problems: list[Any]) -> list[Any]:
    """Drop a route's copies of the default's problems (routes inherit the default)."""
    seen = {(p.location, p.message) for p in problems if p.location.startswith("default")}
    own = []
    for problem in problems:
        inherited = re.sub(r"^routes\.('[^']*'|\"[^\"]*\"|[^.]+)", "default", problem.location)
        if problem.location.startswith("routes") and (inherited, problem.message) in seen:
            continue
        own.append(problem)
    return own


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:g}s"


def _describe(policy: Any) -> str:
    r, b, t, g = policy.retry, policy.breaker, policy.timeout, policy.budget
    return (
        f"retry {r.max_attempts} attempts, {r.backoff} {r.base_delay:g}-{r.max_delay:g}s "
        f"({r.jitter} jitter); breaker {b.failure_threshold} failures / "
        f"{b.recovery_timeout:g}s{'' if b.enabled else ' (off)'}; timeout attempt "
        f"{_seconds(t.attempt)}, deadline {_seconds(t.deadline)}; budget ratio {g.ratio:g}"
        f"{'' if g.enabled else ' (off)'}{'; LLM route' if policy.llm else ''}"
    )


def _route_warnings(data: dict[str, Any], text: str, path: Path) -> list[str]:
    """A warning line for each route pattern that can only match an ``sw.call`` key."""
    routes = data.get("routes")
    lines = []
    for pattern in routes if isinstance(routes, dict) else ():
        why = route_with_path(pattern) if isinstance(pattern, str) else None
        if why is not None:
            location = f"routes.{json.dumps(pattern)}"  # a '/' is never in a bare key
            line = find_line(text, location)
            lines.append(redact_text(f"{path}:{line}: warning: {location}: {why}") + "\n")
    return lines


def _check(args: argparse.Namespace, out: Out) -> int:
    path = Path(args.file)
    try:
        text, data = read_data(path)
    except FileProblem as exc:  # missing, a directory or FIFO, too big, not UTF-8, bad TOML
        out.write(f"{exc}\n")
        return 1
    warnings = _route_warnings(data, text, path)
    try:
        default, routes = load_config(data, source=str(path))
    except ConfigError as exc:
        problems = _own_problems(exc.problems)
        out.write(f"{path}: {len(problems)} problem(s)\n")
        for problem in problems:
            line = find_line(text, problem.location)
            where = f"{path}:{line}" if line else str(path)
            # (a location names a route's pattern: it may hold a URL's query)
            out.write(redact_text(f"{where}: {problem.location}: {problem.message}") + "\n")
        out.writelines(warnings)
        return 1
    out.write(f"{path}: OK, a default policy and {len(routes)} route(s)\n")
    out.write(f"  default: {_describe(default)}\n")
    for pattern, policy in routes.items():
        out.write(f"  {redact_text(pattern)}: {_describe(policy)}\n")
    out.writelines(warnings)
    return 0


# --- seawall classify ---------------------------------------------------------


def _read_body(name: str) -> bytes:
    """The start of the body in file ``name``: as much as seawall would read (64 KiB)."""
    try:
        with Path(name).open("rb") as file:  # (not all of /dev/zero; a pipe works)
            return file.read(ERROR_BODY_LIMIT)
    except OSError as exc:
        msg = (
            f"--body {name}: cannot be read ({exc.strerror or exc}); "
            "give the path of a file that holds the response body"
        )
        raise OSError(msg) from exc


def _classify(args: argparse.Namespace, out: Out) -> int:

    if args.status is None and args.exception is None:
        out.write("classify needs --status CODE or --exception 'Name: message'\n")
        return 2
    try:
        headers = [parse_header(h) for h in args.header]
        exception = build_exception(args.exception) if args.exception else None
        body = _read_body(args.body) if args.body else None
        sw = Seawall.from_file(args.config) if args.config else Seawall()
    except PluginError as exc:  # an installed plugin is broken: as ``seawall plugins`` says it
        out.write(f"error: {exc}\n")
        return 1
    except (ValueError, OSError) as exc:
        out.write(f"error: {exc}\n")
        return 1 if isinstance(exc, ConfigError | OSError) else 2
    answer = explain(
        sw,
        method=args.method,
        url=args.url,
        status=args.status,
        headers=headers,
        body=body,
        exception=exception,
        attempt=args.attempt,
    )
    if args.json:
        out.write(json.dumps(answer, indent=2) + "\n")
        return 0
    c = answer["classification"]
    out.write(f"{answer['input']['method']} {answer['input']['url']} (key {answer['key']})\n")
    out.write(f"classification: {c['category']} ({c['reason']}), severity {c['severity']}\n")
    out.write(f"  decided by: {answer['classified_by']}\n")
    flags = [name for name in ("retryable", "counts_as_failure", "escalate") if c[name]]
    out.write(f"  flags: {', '.join(flags) or 'none'}; breaker: {answer['breaker']}\n")
    if c["retry_after"] is not None:
        out.write(f"  server asked to wait {c['retry_after']:g}s\n")
    if answer["retry"]:
        wait = answer["wait"]
        low, high = wait["backoff_range"]
        out.write(
            f"retry after attempt {args.attempt}: yes, waiting {wait['seconds']:g}s "
            f"(decided by {wait['decided_by']}; {wait['backoff']} backoff ceiling "
            f"{wait['backoff_ceiling']:g}s, {wait['jitter']} jitter in [{low:g}, {high:g}]s)\n"
        )
    else:
        out.write(f"retry after attempt {args.attempt}: no, {answer['why_not']}\n")
    return 0


# --- the parser -----------------------------------------------------------------


def _positive(kind: type[float] | type[int]) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            msg = f"{text!r} is not a number"
            raise argparse.ArgumentTypeError(msg) from None
        if not math.isfinite(value):  # nan and inf parse as floats
            msg = f"{text!r} must be a finite number above 0"
            raise argparse.ArgumentTypeError(msg)
        if value <= 0:
            msg = f"{text!r} must be above 0"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seawall", description="Resilience middleware for outbound HTTP calls."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="a naive retry loop and seawall on a failing upstream")
    demo.add_argument("--duration", type=_positive(float), default=20.0, help="seconds (20)")
    demo.add_argument("--clients", type=_positive(int), default=8, help="concurrent clients (8)")
    demo.add_argument(
        "--rate", type=_positive(float), default=10.0, help="requests/s per client (10)"
    )
    demo.add_argument("--seed", type=int, default=1, help="seed of the script and jitter (1)")
    demo.add_argument("--json", action="store_true", help="print the numbers as JSON")
    demo.add_argument(
        "--simulated",
        action="store_true",
        help="run on simulated time: same scenario, no waiting, numbers independent of load",
    )
    demo.add_argument("--plot", metavar="FILE.png", help="draw the timeline (needs matplotlib)")
    demo.set_defaults(run=_demo)

    plugins = sub.add_parser("plugins", help="every registered plugin and its hooks")
    plugins.add_argument("--hook", metavar="NAME", help="only plugins implementing NAME")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(run=_plugins)

    check = sub.add_parser("check", help="check a TOML policy file")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(run=_check)

    classify = sub.add_parser("classify", help="what seawall would do with one result")
    result = classify.add_mutually_exclusive_group()  # an attempt got a response or raised
    result.add_argument("--status", type=parse_status, help="HTTP status, e.g. 429")
    classify.add_argument("--header", action="append", default=[], metavar="'Name: value'")
    classify.add_argument("--body", metavar="FILE", help="the response body")
    result.add_argument("--exception", metavar="'Name: message'", help="the attempt raised this")
    classify.add_argument("--method", type=parse_method, default="GET", help="(GET)")
    classify.add_argument("--url", type=parse_url, help="the request URL (picks the route policy)")
    classify.add_argument("--attempt", type=_positive(int), default=1, help="attempt number (1)")
    classify.add_argument("--config", metavar="FILE", help="a TOML policy file")
    classify.add_argument("--json", action="store_true", help="print JSON")
    classify.set_defaults(run=_classify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``seawall`` command; return its exit code."""
    args = build_parser().parse_args(argv)
    if sys.stdout is None:  # started with stdout closed (``seawall ... >&-``): nowhere to answer
        return 1
    # What the subcommands echo (patterns, keys, methods, messages) cannot drive the
    # terminal; the demo writes only its own text (and rich's codes on a terminal).
    out = sys.stdout if args.command == "demo" else Safe(sys.stdout)
    try:
        code: int = args.run(args, out)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``seawall plugins | head -3``): no traceback. Python
        # flushes stdout again at exit, so point it at devnull first (as its docs say).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:  # Ctrl-C: one line, and the shell's code for SIGINT
        sys.stderr.write("seawall: interrupted\n")
        # Ctrl-C can land while the demo's event loop is half built; its __del__ would
        # then print "Exception ignored in ..." at exit. The command is ending: stay quiet.
        sys.unraisablehook = lambda _unraisable: None
        # Nor asyncio's "Task was destroyed but it is pending!": Ctrl-C inside
        # create_task's call_soon leaves a task that no runner can see or finish.
        logging.getLogger("asyncio").disabled = True
        return 130
    return code
