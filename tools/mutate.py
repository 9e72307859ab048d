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
The unmutated run of each module's tests is timed in the same way; a mutant
that takes more than ``3 x`` that (plus 2 s) is killed and counts as killed.

The last line is ``mutation: K/N killed``; survivors are listed above it with
their diff. Survivors accepted as equivalent are listed in tests/README.md.

Usage: ``python tools/mutate.py [--only breaker,budget] [-j 2]``.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
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
    """A module to mutate, the tests that cover it, and optionally which functions."""

    name: str
    path: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()


TARGETS = (
    Target(
        "breaker", "middleware/breaker.py", ("tests/test_breaker_rules.py", "tests/test_breaker.py")
    ),
    Target(
        "budget", "middleware/budget.py", ("tests/test_budget_rules.py", "tests/test_budget.py")
    ),
    Target(
        "cooldown",
        "middleware/cooldown.py",
        ("tests/test_cooldown_rules.py", "tests/test_cooldown.py", "-k", "not fifty_callers"),
    ),
    Target("retry_after", "middleware/retry_after.py", ("tests/test_retry_after.py",)),
    Target("backoff", "middleware/backoff.py", ("tests/test_builtin_backoff.py",)),
    Target(
        "redact", "middleware/redact.py", ("tests/test_redact_rules.py", "tests/test_redaction.py")
    ),
    Target("watchdog", "middleware/watchdog.py", ("tests/test_watchdog.py",)),
    # The stop/delay rules of the retry loop.
    Target("rules", "middleware/_path/rules.py", ("tests/test_stop_rules.py",)),
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


def _mutations(target: Target, copy: Path) -> list[Any]:
    path = copy / target.path
    spans = _function_lines(path, target.functions) if target.functions else None
    found = []
    for item in _all_work_items([path], {}):
        (spec,) = item.mutations
        if not KEPT_OPERATORS.fullmatch(spec.operator_name):
            continue
        line = spec.start_pos[0]
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
    (pkg / "plugins").symlink_to(dest / "plugins", target_is_directory=True)


def _env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy / "_import")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a mutant and its restore may share an mtime
    return env


class Worker:
    """A ``--worker`` process in one copy: it runs test selections there, one fork each."""

    def __init__(self, copy: Path) -> None:
        self.copy = copy
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            cwd=copy,
            env=_env(copy),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, tests: tuple[str, ...], timeout: float) -> tuple[bool, float]:
        """Run ``tests`` in the copy as it is now: (passed, seconds). A timeout fails."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"tests": list(tests), "timeout": timeout}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"mutate: the worker in {self.copy} died")
        answer = json.loads(line)
        return bool(answer["passed"]), float(answer["seconds"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _warm_up() -> None:
    """Import what a test run imports, except seawall and the tests (children import those)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        _quiet()
        import pytest

        pytest.main(["-q", "-p", "no:cacheprovider", "--co", "tests"])
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
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def _fork_pytest(tests: list[str], timeout: float) -> tuple[bool, float]:
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            _quiet()
            import pytest

            code = int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", *tests]))
        finally:
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


def _serve() -> int:
    """The ``--worker`` loop: one JSON request a line on stdin, one answer a line on stdout."""
    _warm_up()
    for line in sys.stdin:
        request = json.loads(line)
        passed, seconds = _fork_pytest(request["tests"], float(request["timeout"]))
        print(json.dumps({"passed": passed, "seconds": seconds}), flush=True)
    return 0


def _check_import(copy: Path) -> None:
    probe = "import seawall.breaker, seawall.plugins.builtin.backoff as b; print(b.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=copy, env=_env(copy), capture_output=True, text=True
    )
    if not out.stdout.startswith(str(copy)):
        sys.exit(f"mutate: the copy is not what gets imported ({out.stdout or out.stderr})")


def _run_target(target: Target, workers: list[Worker], tally: Tally) -> None:
    # Test files not written yet are left out (so the tool also runs on older trees).
    tests = tuple(t for t in target.tests if not t.endswith(".py") or (ROOT / t).exists())
    passed, seconds = workers[0].run(tests, timeout=600)
    if not passed:
        sys.exit(f"mutate: {target.name}: {' '.join(tests)} fail on the unmutated code; fix first")
    timeout = seconds * 3 + 2
    specs = _mutations(target, workers[0].copy)
    print(f"{target.name}: {len(specs)} mutants, tests take {seconds:.1f}s", flush=True)
    free = list(workers)
    free_lock = threading.Lock()

    def one(spec: Any) -> Result:
        with free_lock:
            worker = free.pop()
        try:
            path = worker.copy / target.path
            operator = cosmic_ray.plugins.get_operator(spec.operator_name)()
            with use_mutation(path, operator, spec.occurrence) as (before, after):
                if after is None:
                    return Result(target, spec.start_pos[0], spec.operator_name, True)
                passed, _ = worker.run(tests, timeout)
            diff = _diff_line(before, after)
            return Result(target, spec.start_pos[0], spec.operator_name, not passed, diff)
        finally:
            with free_lock:
                free.append(worker)

    with concurrent.futures.ThreadPoolExecutor(len(workers)) as pool:
        for result in pool.map(one, specs):
            with tally.lock:
                tally.results.append(result)
            print("." if result.killed else "S", end="", flush=True)
    print(flush=True)


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
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _serve()
    targets = TARGETS
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {t.name for t in TARGETS}
        if unknown:
            parser.error(f"unknown target(s) {sorted(unknown)}")
        targets = tuple(t for t in TARGETS if t.name in wanted)
    # The copies are removed on SIGTERM too (the working tree is never mutated).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tally = Tally()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="seawall-mutate-") as tmp:
        copies = [Path(tmp) / f"w{i}" for i in range(max(1, args.jobs))]
        for copy in copies:
            _copy_tree(copy)
        _check_import(copies[0])
        workers = [Worker(copy) for copy in copies]
        try:
            for target in targets:
                _run_target(target, workers, tally)
        finally:
            for worker in workers:
                worker.close()
    survivors = [r for r in tally.results if not r.killed]
    for r in survivors:
        print(f"survived: {r.target.path}:{r.line} {r.operator.removeprefix('core/')}")
        if r.diff:
            print(f"      {r.diff}")
    for target in targets:
        mine = [r for r in tally.results if r.target is target]
        print(f"  {target.name}: {sum(r.killed for r in mine)}/{len(mine)} killed")
    killed = len(tally.results) - len(survivors)
    print(f"({time.monotonic() - started:.0f}s)")
    print(f"mutation: {killed}/{len(tally.results)} killed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
