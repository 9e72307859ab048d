"""A real ``redis-server`` on a free 127.0.0.1 port, for the fleet tests (no persistence).

Each server runs in a temporary directory of its own: a server writes an RDB file even
with ``--save ""`` when it serves a replica (``REPLICAOF`` in ``test_fleet_hostile``),
and in the working directory that file was ``dump.rdb`` at the repository's root."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any, Literal

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

#: Seconds a server gets to start answering.
START_LIMIT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process; ``kill`` and ``start`` again on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir: str | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="seawall-redis-")
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--dir",
                self.dir,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.dir,
        )
        deadline = time.monotonic() + START_LIMIT
        while time.monotonic() < deadline:  # bounded: a PING that answers
            if self.proc.poll() is not None:
                msg = f"redis-server exited with {self.proc.returncode} on port {self.port}"
                raise RuntimeError(msg)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)  # polling a process we started, not waiting for seawall's state
        msg = f"redis-server did not answer on port {self.port} within {START_LIMIT} s"
        raise RuntimeError(msg)

    def pause(self) -> None:
        """Stop the server (SIGSTOP): connections are accepted, nothing is answered."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # (a paused server dies as well, but say so)
            proc.kill()
            proc.wait(timeout=10)
        if self.dir is not None:  # (a server started again gets a new, empty one)
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def redis_server() -> RedisServer:
    """A started server, or a skip saying how to get one (``.ci/run`` installs it)."""
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server is not installed: apt-get install redis-server (.ci/run does)")
    server = RedisServer()
    server.start()
    return server


def server_fixture(scope: Literal["module", "function"] = "module") -> Any:
    """A ``server`` fixture: a redis-server of the test module's (or test's) own, killed after.

    A module says ``server = server_fixture()`` (or ``server_fixture("function")``)."""

    @pytest.fixture(scope=scope, name="server")
    def _server() -> Iterator[RedisServer]:
        srv = redis_server()
        yield srv
        srv.kill()

    return _server
