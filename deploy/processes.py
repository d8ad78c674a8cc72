"""Start and stop local processes by PID (never by name), checking that a
recorded PID still belongs to the program we started before signalling it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def is_running(pid: int, marker: str | None = None) -> bool:
    """True if ``pid`` is alive (not a zombie) and, when given, its command
    line contains ``marker`` (guards against PID reuse)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    try:
        if proc.joinpath("stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
        if marker is not None:
            return marker in proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, IndexError):
        return False
    return True


def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> int:
    """Start a detached process (own session: Ctrl-C in the terminal does not
    reach it; ``stop`` does). Returns its PID."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    return proc.pid


def stop(pid: int, marker: str | None = None, timeout_s: float = 10.0) -> bool:
    """SIGTERM, wait, then SIGKILL. Returns False if it was not running."""
    if not is_running(pid, marker):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_running(pid):
            _reap(pid)
            return True
        _reap(pid)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    while is_running(pid):
        _reap(pid)
        time.sleep(0.05)
    return True


def _reap(pid: int) -> None:
    # Only our own children can be reaped; others are reaped by their parent.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout_s: float, pid: int | None = None) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        if pid is not None and not is_running(pid):
            return False
        time.sleep(0.05)
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
