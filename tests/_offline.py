"""Run a Python file with no network but loopback: ``python tests/_offline.py FILE``.

An audit hook refuses every name lookup and connection to a host that is not
127.0.0.1, ::1 or localhost (the program gets ``ConnectionRefusedError``), so
a docs block or example that would reach the internet fails loudly. With
``SEAWALL_OFFLINE_LOG`` set, every host the program looked up or connected to
is appended to that file, one per line, so a test can assert what was used.
"""

from __future__ import annotations

import ipaddress
import os
import runpy
import sys
from typing import Any

_LOG = os.environ.get("SEAWALL_OFFLINE_LOG")


def _is_loopback(host: object) -> bool:
    if host is None:  # getaddrinfo(None, port): a local address to bind
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _guard(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.getaddrinfo":
        host = args[0]
    elif event == "socket.connect":
        address = args[1]
        if not isinstance(address, tuple):
            return  # a Unix socket path
        host = address[0]
    else:
        return
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as log:
            log.write(f"{host!s}\n")
    if not _is_loopback(host):
        msg = f"offline run: {event} to {host!r} refused; only 127.0.0.1 may be used"
        raise ConnectionRefusedError(msg)


if __name__ == "__main__":
    sys.addaudithook(_guard)
    target = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(target, run_name="__main__")
