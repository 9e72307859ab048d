"""Mutation testing of seawall's mechanism modules (``make mutate``).

cosmic-ray makes the mutants (its operators, its AST positions, its
``use_mutation``, which puts the original back); this script chooses what to
mutate, runs only the tests that cover each module, and tallies. Each mutant
runs in a private copy of the tree (one per worker), never in the working
tree, so an interrupted run cannot leave a mutated file behind: the copies
live in a temporary folder removed on exit.

A copy is imported as ``seawall`` through a small link tree on
``PYTHONPATH`` (the strict editable install in ``.venv`` points at the
working tree, not the copy).

Speed: a pytest start costs 4-6 s on a loaded machine, most of it importing
pytest, its plugins, aiohttp and the rest. So each worker is one long-lived
process (``--worker``) that imports all of that once, never ``seawall`` or
the tests, and forks a child per mutant: the child runs pytest in-process on
the mutated copy, so it imports ``seawall`` and the tests afresh, and exits.
The worker freezes its objects (``gc.freeze()``) before forking, and the
children write byte code in the copy, so that pytest's rewritten test modules
are cached there (tests/README.md, "Mutation testing", says what each saves).
The unmutated run of each module's tests is traced: a mutant runs only the
tests that execute its statement (for a statement run at import, the tests
that execute the lines reading it), and one that takes more than about three
times their traced time is killed and counts as killed.

The last line is ``mutation: K/N killed``; survivors are listed above it with
their diff. Survivors accepted as equivalent are listed in tests/README.md.

Usage: ``python tools/mutate.py [--only breaker,budget] [-j 2] [--rerun LOG]
[--lines middleware/cooldown.py:200-325,middleware/learnt_pace.py] [--plan]``.
"""

from __future__ import annotations

import argparse
import ast
import compileall
import concurrent.futures
import gc
import importlib
import json
import os
import py_compile
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import cosmic_ray.plugins
    from cosmic_ray.commands.init import _all_work_items
    from cosmic_ray.mutating import use_mutation
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("cosmic-ray is missing: pip install -e '.[mutate]' (or run `make mutate`)")

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    """Modules to mutate, the tests that cover them, and optionally which functions.

    Several modules (a module and its parts) share one traced run of the tests.
    """

    name: str
    paths: tuple[str, ...]
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()


#: Tests that wait in real time or start processes are left out (``-m "not slow"``,
#: ``-k``): a mutant's verdict must not depend on the machine's load.
_BREAKER_TESTS = (
    "tests/test_breaker_rules.py",
    "tests/test_breaker_probe_rules.py",
    "tests/test_hold_rules.py",
    "tests/test_breaker_recovery.py",
    "tests/test_breaker_hold.py",
    "tests/test_breaker_held_health.py",
    "tests/test_breaker_adaptive.py",
    "tests/test_breaker_guard.py",
    "tests/test_breaker.py",
    "tests/test_lock_races.py",
)

TARGETS: tuple[Target, ...] = (
    Target(
        "breaker",
        ("middleware/breaker.py", "middleware/breaker_hold.py", "middleware/breaker_parts.py"),
        _BREAKER_TESTS,
    ),
    Target(
        "hold",
        ("middleware/_path/hold.py",),
        (
            "tests/test_hold_rules.py",
            "tests/test_breaker_hold.py",
            "tests/test_breaker_recovery.py",
            "tests/test_breaker_held_health.py",
            "tests/test_breaker_guard.py",
            "tests/test_lock_races.py",
            # The held threads and guards (hold.py's sync half, since 2026-12-05).
            "tests/test_sync_wait.py",
            "tests/test_breaker_guard_hold.py",
            "tests/test_breaker_guard_sync.py",
            "tests/test_hold_lapse.py",
            "tests/test_sync_audit.py",
            "tests/test_held_interrupt.py",
        ),
    ),
    Target(
        "budget", ("middleware/budget.py",), ("tests/test_budget_rules.py", "tests/test_budget.py")
    ),
    Target(
        "cooldown",
        ("middleware/cooldown.py", "middleware/learnt_pace.py", "middleware/pace_samples.py"),
        (
            "tests/test_cooldown_rules.py",
            "tests/test_cooldown.py",
            "tests/test_hint_bounds.py",
            "tests/test_pacing.py",
            "tests/test_stall_bunch.py",
            "tests/test_early_probe.py",
            "-k",
            "not fifty_callers",
            "-m",
            "not slow",
        ),
    ),
    Target(
        "retry_after",
        ("middleware/retry_after.py",),
        ("tests/test_retry_after_rules.py", "tests/test_retry_after.py"),
    ),
    Target(
        "backoff",
        ("middleware/backoff.py",),
        ("tests/test_backoff_rules.py", "tests/test_builtin_backoff.py"),
    ),
    Target(
        "redact",
        ("middleware/redact.py",),
        (
            "tests/test_redact_rules.py",
            "tests/test_redaction.py",
            "tests/test_fuzz_redact.py",
            "tests/test_redact_userinfo.py",
            "tests/test_key_escaped.py",
        ),
    ),
    Target(
        "watchdog",
        ("middleware/watchdog.py",),
        ("tests/test_watchdog_rules.py", "tests/test_watchdog.py"),
    ),
    # The stop/delay rules of the retry loop.
    Target(
        "rules",
        ("middleware/_path/rules.py",),
        ("tests/test_path_rules.py", "tests/test_stop_rules.py"),
    ),
)

#: The operators we use, a mutmut-like set: each comparison to its boundary
#: and its negation, each arithmetic operator to its inverse, constants +-1,
#: booleans, ``not``, ``and``/``or``, loops, ``break``/``continue`` and caught
#: exception types. cosmic-ray's full cross product (``<`` to ``==``, ``+`` to
#: ``>>``, ...) mostly makes type errors or repeats of these, and triples the run.
KEPT_OPERATORS = re.compile(
    r"core/(ReplaceBinaryOperator_(Add_Sub|Sub_Add|Mul_Div|Div_Mul|FloorDiv_Div|Pow_Mul|Mod_Mul)"
    r"|ReplaceComparisonOperator_(Lt_LtE|Lt_GtE|LtE_Lt|LtE_Gt|Gt_GtE|Gt_LtE|GtE_Gt|GtE_Lt"
    r"|Eq_NotEq|NotEq_Eq|Is_IsNot|IsNot_Is)"
    r"|ReplaceUnaryOperator_(USub_UAdd|Delete_Not)"
    r"|AddNot|ReplaceTrueWithFalse|ReplaceFalseWithTrue|ReplaceAndWithOr|ReplaceOrWithAnd"
    r"|ReplaceBreakWithContinue|ReplaceContinueWithBreak|ExceptionReplacer|NumberReplacer"
    r"|ZeroIterationForLoop)"
)


@dataclass
class Result:
    target: Target
    path: str
    line: int
    operator: str
    killed: bool
    diff: str = ""


@dataclass
class Tally:
    results: list[Result] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _function_lines(path: Path, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """Line ranges of ``Class.method`` or ``function`` definitions in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if (
                    isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                    and f"{node.name}.{item.name}" in names
                ):
                    spans.append((item.lineno, item.end_lineno or item.lineno))
        elif isinstance(node, ast.FunctionDef) and node.name in names:
            spans.append((node.lineno, node.end_lineno or node.lineno))
    missing = len(names) - len(spans)
    if missing:
        sys.exit(f"mutate: {path}: some of {names} not found; update TARGETS in {__file__}")
    return spans


def _mutations(target: Target, rel: str, copy: Path) -> list[Any]:
    path = copy / rel
    spans = _function_lines(path, target.functions) if target.functions else None
    found = []
    source = path.read_text(encoding="utf-8").splitlines()
    for item in _all_work_items([path], {}):
        (spec,) = item.mutations
        if not KEPT_OPERATORS.fullmatch(spec.operator_name):
            continue
        line = spec.start_pos[0]
        text = source[line - 1]
        if text.lstrip().startswith(("def ", "async def ")) and text[spec.start_pos[1]] == "*":
            continue  # cosmic-ray takes the keyword-only marker ``*`` for a multiplication
        if spans is not None and not any(a <= line <= b for a, b in spans):
            continue
        found.append(spec)
    return found


def _copy_tree(dest: Path) -> None:
    """Copy the working tree's files (tracked and new, not ignored) and link ``seawall``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = Path(raw.decode())
        src = ROOT / rel
        if not src.is_file():
            continue  # deleted but still tracked
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    pkg = dest / "_import" / "seawall"
    pkg.mkdir(parents=True)
    for src in (dest / "middleware").iterdir():
        if src.is_file():
            (pkg / src.name).symlink_to(src)
        elif src.is_dir() and (src / "__init__.py").exists():  # _path, cli, llm, testing
            (pkg / src.name).symlink_to(src, target_is_directory=True)
    (pkg / "plugins").symlink_to(dest / "plugins", target_is_directory=True)
    # Byte code checked by the source's hash, not its mtime: a mutant and its restore
    # may share an mtime, never a hash. Compiled once here, each child then compiles
    # only the mutated module (and writes it, under its own hash).
    mode = py_compile.PycInvalidationMode.CHECKED_HASH
    compileall.compile_dir(pkg, quiet=2, invalidation_mode=mode)  # the top-level links
    for linked in (dest / "middleware", dest / "plugins"):
        compileall.compile_dir(linked, quiet=2, invalidation_mode=mode)


def _env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy / "_import")
    return env


class Worker:
    """A ``--worker`` process in one copy: it runs test selections there, one fork each."""

    def __init__(self, copy: Path, tests: list[str]) -> None:
        self.copy = copy
        #: CPU seconds of the children (the runs) so far, user and system.
        self.cpu = 0.0
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", *tests],
            cwd=copy,
            env=_env(copy),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(
        self, tests: tuple[str, ...], timeout: float, trace: list[str] | None = None
    ) -> tuple[bool, float]:
        """Run ``tests`` in the copy as it is now: (passed, seconds). A timeout fails.

        ``trace``: modules' paths in the copy; the lines of each that each test
        runs are written to ``LINES`` in the copy (see ``_LineTracer``).
        """
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        request = {"tests": list(tests), "timeout": timeout, "trace": trace}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"mutate: the worker in {self.copy} died")
        answer = json.loads(line)
        self.cpu += float(answer["cpu"])
        return bool(answer["passed"]), float(answer["seconds"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


#: The children's pytest options. Plugins the worker imported before pytest
#: started cannot have their asserts rewritten; pytest warns, and our
#: ``filterwarnings = error`` would make that an error.
PYTEST_ARGS = ("-q", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")


def _warm_up(tests: list[str]) -> None:
    """Import what collecting ``tests`` imports, except seawall and the tests themselves."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        _quiet()
        import pytest

        pytest.main([*PYTEST_ARGS, "--co", *tests])
        names = [n for n, m in list(sys.modules.items()) if _third_party(n, m)]
        with os.fdopen(write, "w") as out:
            out.write("\n".join(names))
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        names = pipe.read().split()
    os.waitpid(pid, 0)
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # a module that cannot be imported here is imported by the child
            continue


def _third_party(name: str, module: object) -> bool:
    if name.split(".")[0] in {"seawall", "tests", "conftest", "_servers", "_helpers", "__main__"}:
        return False
    path = getattr(module, "__file__", None) or ""
    return not path.startswith(os.getcwd())


def _quiet() -> None:
    if os.environ.get("MUTATE_VERBOSE"):  # show the children's pytest output (on stderr)
        os.dup2(2, 1)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


#: Where a traced run writes which tests ran which lines (in the copy).
LINES = ".mutate-lines.json"


class _LineTracer:
    """A pytest plugin and trace function: the tests that run each line of one module.

    Lines run outside any test (at import, during collection) are recorded
    under ``""``: a mutant there needs every test of the module.
    """

    def __init__(self, paths: list[str]) -> None:
        #: The traced modules' real paths, and the name each is recorded under.
        self.paths = {os.path.realpath(p): p for p in paths}
        self.current = ""
        self.lines: dict[str, dict[int, set[str]]] = {p: {} for p in paths}
        #: Each test's duration (setup, call, teardown) in the traced run.
        self.seconds: dict[str, float] = {}
        self._mine: dict[str, dict[int, set[str]] | None] = {}

    def trace(self, frame: Any, _event: str, _arg: Any) -> Any:
        name = frame.f_code.co_filename
        if name in self._mine:
            found = self._mine[name]
        else:
            known = self.paths.get(os.path.realpath(name))
            found = self._mine[name] = None if known is None else self.lines[known]
        if found is None:
            return None
        table = found

        def local(frame: Any, event: str, _arg: Any) -> Any:
            if event == "line":
                table.setdefault(frame.f_lineno, set()).add(self.current)
            return local

        return local

    def pytest_runtest_protocol(self, item: Any, nextitem: Any) -> None:
        self.current = item.nodeid

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        self.current = ""

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration


def _fork_pytest(tests: list[str], timeout: float, trace: list[str] | None) -> tuple[bool, float]:
    started = time.monotonic()
    # The worker's objects (all it imported) go to the permanent generation: a
    # collection in the child (pytest runs ``gc.collect()`` at the end of a
    # session) then walks only the child's objects, not the whole inherited
    # heap, which also spared copying its pages. A third of a child's CPU.
    gc.freeze()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            _quiet()
            # Byte code is written in the copy even under PYTHONDONTWRITEBYTECODE:
            # pytest then rewrites the asserts of each test module and conftest once
            # per copy, not in every child (it caches them by the source's mtime and
            # size, which never change in a copy); the mutated module's byte code is
            # hash-checked (see ``_copy_tree``), so a mutant's is never taken for
            # the original's.
            sys.dont_write_bytecode = False
            import pytest

            if trace is None:
                code = int(pytest.main([*PYTEST_ARGS, "-x", *tests]))
            else:
                tracer = _LineTracer(trace)
                sys.settrace(tracer.trace)
                threading.settrace(tracer.trace)
                code = int(pytest.main([*PYTEST_ARGS, *tests], plugins=[tracer]))
                sys.settrace(None)
                lines = {
                    path: {line: sorted(ids) for line, ids in found.items()}
                    for path, found in tracer.lines.items()
                }
                found = {"lines": lines, "seconds": tracer.seconds}
                Path(LINES).write_text(json.dumps(found), encoding="utf-8")
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0, time.monotonic() - started
        if time.monotonic() - started > timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return False, time.monotonic() - started
        time.sleep(0.005)


def _serve(tests: list[str]) -> int:
    """The ``--worker`` loop: one JSON request a line on stdin, one answer a line on stdout."""
    _warm_up(tests)
    for line in sys.stdin:
        request = json.loads(line)
        before = os.times()
        passed, seconds = _fork_pytest(
            request["tests"], float(request["timeout"]), request.get("trace")
        )
        after = os.times()
        cpu = (after.children_user - before.children_user) + (
            after.children_system - before.children_system
        )
        print(json.dumps({"passed": passed, "seconds": seconds, "cpu": cpu}), flush=True)
    return 0


def _check_import(copy: Path) -> None:
    probe = "import seawall.breaker, seawall.plugins.builtin.backoff as b; print(b.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=copy, env=_env(copy), capture_output=True, text=True
    )
    if not out.stdout.startswith(str(copy)):
        sys.exit(f"mutate: the copy is not what gets imported ({out.stdout or out.stderr})")


def _tests(target: Target) -> tuple[str, ...]:
    # Test files not written yet are left out (so the tool also runs on older trees).
    return tuple(t for t in target.tests if not t.endswith(".py") or (ROOT / t).exists())


def _statement_spans(path: Path) -> list[tuple[int, int]]:
    """(first, last) line of every statement in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.lineno, node.end_lineno or node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.stmt)
    ]


@dataclass(frozen=True)
class Reach:
    """What can observe a statement that runs at import: the lines that read it (module,
    line), and test files that name it. ``lines`` ``None``: anything may (every test)."""

    lines: tuple[tuple[str, int], ...] | None
    files: tuple[str, ...] = ()


def _loads(tree: ast.AST, name: str) -> list[int]:
    return [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load)
    ]


def _import_time_reach(target: Target, rel: str, copy: Path) -> dict[int, Reach]:
    """For statements of ``rel`` that run at import, by first line: who can see a mutant there.

    Such a line is run "by" no test (it runs at import), so every test of the
    target would run each mutant there, the slowest ones for a constant that a
    few functions read. Narrowed, soundly:

    - a module-level ``NAME = ...``: the tests that run a line reading ``NAME``
      in the target's modules, and every test of a test file naming it; every
      test when another source (``middleware``, ``plugins``, a test helper)
      names it, or when a line reading it runs at import (a constant made from
      it: ``_selection`` sees that line run outside any test);
    - a ``def``'s header (defaults): the tests that run its body.
    """
    trees = {r: ast.parse((copy / r).read_text(encoding="utf-8")) for r in target.paths}
    tree = trees[rel]
    reach: dict[int, Reach] = {}
    mine = {(copy / r).resolve() for r in target.paths}
    others = [
        p.read_text(encoding="utf-8")
        for folder in ("middleware", "plugins", "tests")
        for p in (copy / folder).rglob("*.py")
        if p.resolve() not in mine and not p.name.startswith("test_")
    ]
    tests = [
        (t, (copy / t).read_text(encoding="utf-8")) for t in _tests(target) if t.endswith(".py")
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = range(node.body[0].lineno, (node.end_lineno or node.lineno) + 1)
            reach[node.lineno] = Reach(tuple((rel, n) for n in body))
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            name = node.targets[0]
        elif isinstance(node, ast.AnnAssign):
            name = node.target
        else:
            continue
        if not isinstance(name, ast.Name):
            continue
        word = re.compile(rf"\b{re.escape(name.id)}\b")
        if any(word.search(text) for text in others):
            reach[node.lineno] = Reach(None)
            continue
        reading = tuple((r, n) for r, t in trees.items() for n in _loads(t, name.id))
        naming = tuple(t for t, text in tests if word.search(text))
        reach[node.lineno] = Reach(reading, naming)
    return reach


def _selection(
    line: int,
    spans: list[tuple[int, int]],
    lines: dict[int, list[str]],
    seconds: dict[str, float],
    tests: tuple[str, ...],
    reach: dict[int, Reach] | None = None,
    modules: dict[str, dict[int, list[str]]] | None = None,
) -> tuple[str, ...]:
    """The tests that run the innermost statement holding ``line`` (all at import); ``()``: none.

    A test that never runs the mutated statement runs the same with the
    mutant, so it cannot kill it: leaving it out loses nothing. The fastest
    go first, so that ``-x`` stops a killed mutant early. A statement that
    runs at import is narrowed by ``reach`` (``_import_time_reach``) to the
    tests that run the lines reading it (``modules``: each module's traced
    lines).
    """
    holding = [(b - a, a, b) for a, b in spans if a <= line <= b]
    first, last = (min(holding)[1:]) if holding else (line, line)
    ids: set[str] = set()
    seen = reach.get(first) if reach is not None else None
    if seen is not None and modules is not None and "" in lines.get(first, ()):
        if seen.lines is None:
            return tests
        for module, number in seen.lines:
            ids.update(modules[module].get(number, ()))
        ids.update(i for i in seconds if i.split("::")[0] in seen.files)
    else:
        for number in range(first, last + 1):
            ids.update(lines.get(number, ()))
    if "" in ids:
        return tests
    options = tuple(t for t in tests if not t.endswith(".py"))
    ordered = sorted(ids, key=lambda i: (seconds.get(i, 0.0), i))
    return (*options, *ordered) if ids else ()


#: ``--lines``: for a module's path, the line ranges to mutate (a path alone: all of it).
LineRanges = dict[str, list[tuple[int, int]]]


def _parse_lines(text: str) -> LineRanges:
    """``path[:a-b]`` items, comma-separated: the mutants to make, by module and line."""
    ranges: LineRanges = {}
    for item in filter(None, text.split(",")):
        path, _, span = item.partition(":")
        if not (ROOT / path).is_file():
            sys.exit(f"mutate: --lines: no file {path} (a path from the tree's root)")
        first, _, last = span.partition("-")
        try:
            bounds = (int(first or 1), int(last or first or 10**9))
        except ValueError:
            sys.exit(f"mutate: --lines: {item!r} is not path, path:A-B, path:A- or path:A")
        ranges.setdefault(path, []).append(bounds)
    return ranges


def _run_target(
    target: Target,
    workers: list[Worker],
    tally: Tally,
    only: set[tuple[str, int, str]] | None = None,
    ranges: LineRanges | None = None,
    plan: bool = False,
) -> None:
    if only is not None and not any(path in target.paths for path, _l, _o in only):
        return
    if ranges is not None and not any(path in target.paths for path in ranges):
        return
    tests = _tests(target)
    began = time.monotonic()
    first = workers[0]
    traced_paths = [str(first.copy / rel) for rel in target.paths]
    passed, seconds = first.run(tests, timeout=600, trace=traced_paths)
    if not passed:
        sys.exit(f"mutate: {target.name}: {' '.join(tests)} fail on the unmutated code; fix first")
    traced = json.loads((first.copy / LINES).read_text(encoding="utf-8"))
    durations: dict[str, float] = traced["seconds"]
    # A bound for one mutant, from the traced run (slower than a plain one): three times
    # the start-up (what the run took beyond its tests) and the selected tests' time.
    start_up = max(0.0, seconds - sum(durations.values()))

    def timeout_for(selected: tuple[str, ...]) -> float:
        own = sum(durations.get(t, 0.0) for t in selected)
        return min(seconds * 2 + 5, 3 * (start_up + own) + 10)

    work: list[tuple[str, Any, tuple[str, ...]]] = []
    modules = {
        rel: {int(k): v for k, v in traced["lines"][copied].items()}
        for rel, copied in zip(target.paths, traced_paths, strict=True)
    }
    for rel in target.paths:
        lines = modules[rel]
        spans = _statement_spans(first.copy / rel)
        reach = _import_time_reach(target, rel, first.copy)
        for spec in _mutations(target, rel, first.copy):
            if only is not None and (rel, spec.start_pos[0], spec.operator_name) not in only:
                continue
            if ranges is not None and not any(
                a <= spec.start_pos[0] <= b for a, b in ranges.get(rel, ())
            ):
                continue
            selected = _selection(spec.start_pos[0], spans, lines, durations, tests, reach, modules)
            work.append((rel, spec, selected))
    print(f"{target.name}: {len(work)} mutants, tests take {seconds:.1f}s", flush=True)
    if plan:  # what each mutant would run, from the traced run (an upper bound: no ``-x``)
        every = sum(1 for _r, _s, selected in work if selected == tests)
        none = sum(1 for _r, _s, selected in work if not selected)
        own = sum(start_up + sum(durations.get(t, 0.0) for t in sel) for _r, _s, sel in work)
        print(
            f"  plan: {every} run every test, {none} none; at most {own:.0f}s of traced"
            f" test time (start-up {start_up:.1f}s each)",
            flush=True,
        )
        return
    cpu_before = sum(w.cpu for w in workers)
    free = list(workers)
    free_lock = threading.Lock()

    def one(item: tuple[str, Any, tuple[str, ...]]) -> Result:
        rel, spec, selected = item
        with free_lock:
            worker = free.pop()
        try:
            path = worker.copy / rel
            operator = cosmic_ray.plugins.get_operator(spec.operator_name)()
            with use_mutation(path, operator, spec.occurrence) as (before, after):
                if after is None:
                    return Result(target, rel, spec.start_pos[0], spec.operator_name, True)
                # No test runs the line: it survives without a run.
                passed = worker.run(selected, timeout_for(selected))[0] if selected else True
            diff = _diff_line(before, after)
            if not selected:
                diff = f"(no test runs this line) {diff}"
            return Result(target, rel, spec.start_pos[0], spec.operator_name, not passed, diff)
        finally:
            with free_lock:
                free.append(worker)

    with concurrent.futures.ThreadPoolExecutor(len(workers)) as pool:
        for result in pool.map(one, work):
            with tally.lock:
                tally.results.append(result)
            if result.killed:
                print(".", end="", flush=True)
            else:  # at once, so that work on it can start during a long run
                print(f"\n{_survivor(result)}", flush=True)
    cpu = sum(w.cpu for w in workers) - cpu_before
    each = cpu / max(1, len(work))
    print(
        f" ({time.monotonic() - began:.0f}s; runs {cpu:.0f}s CPU, {each:.2f}s a mutant)", flush=True
    )


def _survivor(r: Result) -> str:
    """How a survivor is printed (``--rerun`` reads the first line back)."""
    head = f"survived: {r.path}:{r.line} {r.operator.removeprefix('core/')}"
    return f"{head}\n      {r.diff}" if r.diff else head


#: A survivor's first line, as ``_survivor`` prints it.
SURVIVOR = re.compile(r"survived: (\S+):(\d+) (\S+)")


def _rerun_filter(log: str) -> set[tuple[str, int, str]]:
    """(path, line, operator) of each survivor listed in the output of an earlier run."""
    text = Path(log).read_text(encoding="utf-8")
    return {(m[1], int(m[2]), f"core/{m[3]}") for m in SURVIVOR.finditer(text)}


def _diff_line(before: str, after: str) -> str:
    for old, new in zip(before.splitlines(), after.splitlines(), strict=False):
        if old != new:
            return f"- {old.strip()}\n      + {new.strip()}"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", help="comma-separated target names: " + ", ".join(t.name for t in TARGETS)
    )
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--rerun",
        metavar="LOG",
        help="run only the survivors listed in LOG (the output of an earlier run)",
    )
    parser.add_argument(
        "--lines",
        metavar="PATH[:A-B],...",
        help="mutate only these modules (paths from the root), or only lines A to B of them"
        " (A-: to the end); to resume a run that was stopped, or to split one",
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="only the traced runs: how many mutants, and how much test time they would take",
    )
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return _serve(args.worker)
    targets = TARGETS
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {t.name for t in TARGETS}
        if unknown:
            parser.error(f"unknown target(s) {sorted(unknown)}")
        targets = tuple(t for t in TARGETS if t.name in wanted)
    ranges = _parse_lines(args.lines) if args.lines else None
    # The copies are removed on SIGTERM too (the working tree is never mutated).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tally = Tally()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="seawall-mutate-") as tmp:
        copies = [Path(tmp) / f"w{i}" for i in range(max(1, args.jobs))]
        for copy in copies:
            _copy_tree(copy)
        _check_import(copies[0])
        files = sorted({t for target in targets for t in _tests(target) if t.endswith(".py")})
        workers = [Worker(copy, files) for copy in copies]
        made = time.monotonic() - started
        print(f"{len(workers)} workers, copies made ({made:.0f}s)", flush=True)
        try:
            only = _rerun_filter(args.rerun) if args.rerun else None
            for target in targets:
                _run_target(target, workers, tally, only, ranges, args.plan)
        finally:
            for worker in workers:
                worker.close()
    if args.plan:
        print(f"(plan only, no mutant run: {time.monotonic() - started:.0f}s)")
        return 0
    survivors = [r for r in tally.results if not r.killed]
    for r in survivors:
        print(_survivor(r))
    for target in targets:
        mine = [r for r in tally.results if r.target is target]
        print(f"  {target.name}: {sum(r.killed for r in mine)}/{len(mine)} killed")
    killed = len(tally.results) - len(survivors)
    # The workers are reaped (closed) by now, and each reaped its forked children:
    # the children's CPU time here is all of the run's work outside this process.
    spent = os.times()
    cpu = spent.children_user + spent.children_system + spent.user + spent.system
    each = cpu / max(1, len(tally.results))
    print(f"({time.monotonic() - started:.0f}s wall, {cpu:.0f}s CPU, {each:.2f}s CPU a mutant)")
    print(f"mutation: {killed}/{len(tally.results)} killed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
