"""The ``seawall`` command with hostile input, run as a user runs it: a real process.

Escape sequences and bidi controls in what it echoes, a closed stdout, Ctrl-C,
a body file that never ends (fifth audit, docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

from seawall.cli import demo as demo_cli

#: A guard against a hang, not a measure: every run here takes well under a second.
GUARD = 60

ESC = "\x1b"
RLO = "\u202e"  # right-to-left override: shows "moc.live" as "evil.com"


def seawall(*argv: str, **options: object) -> subprocess.CompletedProcess[str]:
    """``python -m seawall ARGV`` in a fresh process, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "seawall", *argv],
        capture_output=True,
        text=True,
        timeout=GUARD,
        check=False,
        **options,  # type: ignore[call-overload]
    )


def test_check_refuses_a_route_pattern_that_would_drive_the_terminal(tmp_path: Path) -> None:
    """`seawall check` refuses a route pattern with an escape sequence or a bidi control.

    Such a pattern never matches a host (it was accepted, and shown escaped); the
    refusal shows it escaped too, at its line, with the pattern to write.
    """
    path = tmp_path / "seawall.toml"
    path.write_text(
        '[routes."evil\\u001b]0;pwned\\u0007.com"]\nretry = {max_attempts = 2}\n'
        '[routes."x\\u202ecom"]\nretry = {max_attempts = 3}\n',
        encoding="utf-8",
    )
    done = seawall("check", str(path))
    assert done.returncode == 1, done.stdout
    assert ESC not in done.stdout
    assert "\x07" not in done.stdout
    assert RLO not in done.stdout
    assert f'{path}:1: routes."evil\\u001b]0;pwned\\u0007.com": route pattern ' in done.stdout
    assert "'evil\\x1b]0;pwned\\x07.com' would never match a host" in done.stdout
    assert "write 'evil]0;pwned.com'" in done.stdout
    assert f"{path}:3: routes.\"x\\u202ecom\": route pattern 'x\\u202ecom'" in done.stdout
    assert "the bidi control U+202E (RIGHT-TO-LEFT OVERRIDE) at index 1" in done.stdout


def test_classify_refuses_a_key_from_the_policy_file_showing_it_escaped(tmp_path: Path) -> None:
    """`seawall classify --config` with an escape sequence in a key: refused, shown escaped."""
    path = tmp_path / "seawall.toml"
    path.write_text('[default]\nkey = "k\\u001b[2Jx"\n', encoding="utf-8")
    done = seawall("classify", "--status", "503", "--config", str(path))
    assert (done.returncode, done.stderr) == (1, "")
    assert ESC not in done.stdout
    assert "default.key: Policy.key must be a name without control, bidi or" in done.stdout
    assert "got 'k\\x1b[2Jx'" in done.stdout
    assert "write 'k[2Jx'" in done.stdout


def test_classify_refuses_a_method_that_is_not_a_token() -> None:
    """`--method` with an escape sequence is a usage error that shows it escaped."""
    done = seawall("classify", "--status", "503", "--method", f"G{ESC}[31mET")
    assert done.returncode == 2
    assert ESC not in done.stderr
    assert ESC not in done.stdout
    assert "'G\\x1b[31mET' is not an HTTP method; give one such as GET" in done.stderr


def test_classify_takes_a_lower_case_method() -> None:
    """`--method post` is POST, as before."""
    done = seawall("classify", "--status", "503", "--method", "post")
    assert done.returncode == 0
    assert done.stdout.startswith("POST http://upstream.example ")


def test_a_closed_stdout_gives_an_exit_code_not_a_traceback() -> None:
    """`seawall classify ... >&-`: exit 1, nothing on stderr."""
    done = subprocess.run(
        ["sh", "-c", 'exec "$0" -m seawall classify --status 503 >&-', sys.executable],
        capture_output=True,
        text=True,
        timeout=GUARD,
        check=False,
    )
    assert (done.returncode, done.stderr) == (1, "")


def test_ctrl_c_ends_the_demo_with_one_line_and_code_130() -> None:
    """Ctrl-C during `seawall demo` prints one line and exits 130, no traceback.

    The demo gets Ctrl-C's default disposition whatever this process inherited: a
    shell starts a background job (`make test &`) with SIGINT ignored, and a Python
    started that way keeps ignoring it (the demo would run its 600 s).
    """
    with subprocess.Popen(
        [sys.executable, "-m", "seawall", "demo", "--duration", "600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as demo:
        try:
            assert demo.stdout is not None
            assert demo.stdout.readline().startswith("seawall demo:")  # it runs: interrupt it
            demo.send_signal(signal.SIGINT)
            _out, err = demo.communicate(timeout=GUARD)
        finally:
            if demo.poll() is None:  # bounded: a demo that ignored Ctrl-C is ended here
                demo.kill()
    assert (demo.returncode, err) == (130, "seawall: interrupted\n")


def test_ctrl_c_as_the_demo_starts_leaves_no_coroutine_unawaited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C before the runner took the demo's coroutine: no "never awaited" warning.

    The process test above lands its SIGINT wherever the demo is; once in a few
    hundred runs that was before the runner had taken the coroutine, and Python printed
    a RuntimeWarning after the one line (CI, eighteenth session).
    """

    class Interrupted(demo_cli.SimulatedLoop):
        """Ctrl-C lands as the runner hands the coroutine to the loop (once)."""

        landed = False

        def create_task(self, *args: Any, **kwargs: Any) -> Any:
            if not Interrupted.landed:
                Interrupted.landed = True
                raise KeyboardInterrupt
            return super().create_task(*args, **kwargs)

    monkeypatch.setattr(demo_cli, "SimulatedLoop", Interrupted)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(KeyboardInterrupt):
            demo_cli.run(demo_cli.DemoConfig(duration=1.0, simulated=True))
        gc.collect()  # an unawaited coroutine warns when it is collected
    assert [str(w.message) for w in seen if "never awaited" in str(w.message)] == []


def test_a_demo_cancelled_mid_run_leaves_no_exception_unread() -> None:
    """Ctrl-C mid-run (the runner cancels the demo's task): nothing printed at exit.

    The run's gather, cancelled with the demo, ended holding a CancelledError that
    nobody read, and Python printed "_GatheringFuture exception was never retrieved"
    and a traceback after the one line (fresh-clone CI, eighteenth session). On
    simulated time: deterministic, and a second of the demo takes milliseconds.
    """
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: seen.append(ctx))
        run = asyncio.create_task(
            demo_cli.run_demo(demo_cli.DemoConfig(duration=5.0, simulated=True))
        )
        await asyncio.sleep(1.0)  # simulated: the run is under way
        run.cancel()  # what asyncio.Runner does on Ctrl-C
        with contextlib.suppress(asyncio.CancelledError):
            await run

    with asyncio.Runner(loop_factory=demo_cli.SimulatedLoop) as runner:
        runner.run(main())
    gc.collect()  # an unread future reports itself when it is collected
    assert [ctx.get("message") for ctx in seen] == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO")
def test_a_body_from_a_pipe_that_never_ends_is_read_up_to_the_limit(tmp_path: Path) -> None:
    """`--body` reads what seawall would read of a body (64 KiB), not the whole stream."""
    fifo = tmp_path / "body"
    os.mkfifo(fifo)
    finished = threading.Event()

    def writer() -> None:  # 128 KiB, and the pipe stays open until the command ended
        with contextlib.suppress(BrokenPipeError), fifo.open("wb") as pipe:
            pipe.write(b"x" * (128 * 1024))  # (the reader may leave after 64 KiB)
            pipe.flush()
            finished.wait(GUARD)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        done = seawall("classify", "--status", "503", "--body", str(fifo), "--json")
    finally:
        finished.set()
        thread.join(GUARD)
    assert done.returncode == 0, done.stderr
