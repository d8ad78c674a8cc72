"""Embedded Redis (Valkey) and Postgres for machines where those services do not run.

Both embedded servers are torn down when the Python process that started them exits, so
each one runs under a small detached *holder* process (``deploy.embedded_holder``) that
outlives ``folio stack up``: it starts the server, writes a JSON ready file, waits for
SIGTERM/SIGINT, stops the server and exits 0.

Guarantees:
- ``start_embedded_*`` return only once the ready file exists and the service answers
  (Redis PING / psycopg connect). Otherwise the holder is stopped and ``EmbeddedStartError``
  carries a one-line reason ending with the last log line.
- Starting again on a ``data_dir`` whose holder is alive and answering returns that service.
- ``stop_embedded`` signals only PIDs whose command line is a holder (a stale, reused PID is
  never killed) and returns after the holder and its server process are both gone.
- A holder exits non-zero when its server dies, so "holder alive" means "service running".
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote, urlsplit

import psutil
import psycopg
import redis
from psycopg import sql

logger = logging.getLogger("deploy.embedded")  # also when run as __main__

HOLDER_MODULE = "deploy.embedded_holder"
_SERVER_NAMES = ("valkey", "postgres")  # process names a holder's server can have
_POLL_S = 0.1


class EmbeddedError(Exception):
    """Base class for embedded-service failures."""


class EmbeddedStartError(EmbeddedError):
    """The holder or its server did not become ready; the message is one line."""


class EmbeddedStopError(EmbeddedError):
    """A holder or its server survived SIGKILL."""


@dataclass(frozen=True)
class EmbeddedService:
    """A running embedded service. ``pid`` is the holder's: pass it to ``stop_embedded``."""

    kind: str  # "redis" or "postgres"
    pid: int
    url: str
    data_dir: Path
    log_path: Path
    server_pid: int = 0  # valkey-server / postmaster PID, 0 if unknown


def ready_file_for(data_dir: Path) -> Path:
    """Where the holder for ``data_dir`` writes its ready file (next to, not inside, PGDATA)."""
    return data_dir.with_name(f"{data_dir.name}.ready.json")


def start_embedded_redis(
    data_dir: Path, port: int, log_path: Path, timeout_s: float = 15
) -> EmbeddedService:
    """Start (or find running) Valkey on 127.0.0.1:``port``; data persists in ``data_dir``."""
    return _start("redis", data_dir, log_path, timeout_s, ["--port", str(port)])


def start_embedded_postgres(
    data_dir: Path, log_path: Path, timeout_s: float = 60, database: str = "postgres"
) -> EmbeddedService:
    """Start (or find running) Postgres on a unix socket; ``database`` is created if missing.

    The URL is ``postgresql://postgres@/DB?host=SOCKET_DIR&port=5432`` (trust auth, no TCP).
    """
    service = _start("postgres", data_dir, log_path, timeout_s, [])
    if database == "postgres":
        return service
    try:
        return replace(service, url=_ensure_database(service.url, database))
    except psycopg.Error as exc:
        raise EmbeddedStartError(f"cannot create database {database!r}: {exc}") from exc


def holder_running(pid: int) -> bool:
    """True if ``pid`` is a live embedded-service holder (not just any process)."""
    return _holder(pid) is not None


def stop_embedded(pid: int, timeout_s: float = 10) -> bool:
    """Stop the holder ``pid`` and its server; False if no holder runs under that PID.

    SIGTERM lets the holder stop its server cleanly; after ``timeout_s`` the holder, then
    the server it recorded in its ready file, get SIGKILL.
    """
    proc = _holder(pid)
    if proc is None:
        return False
    server = _server_of(proc)
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.terminate()
    _ensure_gone(proc, timeout_s)
    if server is not None:
        _ensure_gone(server, 2.0)
    return True


def _start(
    kind: str, data_dir: Path, log_path: Path, timeout_s: float, extra: list[str]
) -> EmbeddedService:
    data_dir = data_dir.expanduser().resolve()
    log_path = log_path.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    ready = ready_file_for(data_dir)
    existing = _read_ready(ready, kind, data_dir, log_path)
    if existing is not None and holder_running(existing.pid) and _answers(kind, existing.url):
        logger.info("embedded %s already running (holder pid %d)", kind, existing.pid)
        return existing
    ready.unlink(missing_ok=True)
    argv = [sys.executable, "-m", HOLDER_MODULE, kind, "--data-dir", str(data_dir)]
    with log_path.open("ab") as log:
        # A new session: Ctrl-C in the caller's terminal must not reach the holder.
        proc = subprocess.Popen(
            [*argv, "--ready-file", str(ready), *extra],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedStartError(
                f"embedded {kind} exited with code {proc.returncode}: {_last_line(log_path)}"
            )
        service = _read_ready(ready, kind, data_dir, log_path)
        if service is not None and _answers(kind, service.url):
            logger.info("embedded %s ready at %s (holder pid %d)", kind, service.url, proc.pid)
            return service
        time.sleep(_POLL_S)
    with contextlib.suppress(EmbeddedStopError):
        stop_embedded(proc.pid, timeout_s=5)
    raise EmbeddedStartError(
        f"embedded {kind} not ready within {timeout_s:g}s: {_last_line(log_path)}"
    )


def _read_ready(ready: Path, kind: str, data_dir: Path, log_path: Path) -> EmbeddedService | None:
    try:
        info = json.loads(ready.read_text())
        return EmbeddedService(
            kind, int(info["holder_pid"]), str(info["url"]), data_dir, log_path,
            int(info.get("server_pid") or 0),
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not written yet (the holder renames it into place atomically)


def _answers(kind: str, url: str) -> bool:
    if kind == "redis":
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()
    try:
        with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _ensure_database(url: str, database: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if found.fetchone() is None:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # lost a race: fine
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return urlsplit(url)._replace(path="/" + quote(database)).geturl()


def _last_line(log_path: Path) -> str:
    try:
        with log_path.open("rb") as fh:
            fh.seek(max(0, log_path.stat().st_size - 4096))
            lines = fh.read().decode(errors="replace").splitlines()
    except OSError as exc:
        return f"(no log: {exc})"
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    return f"{last} (log {log_path})" if last else f"(log {log_path} is empty)"


def _holder(pid: int) -> psutil.Process | None:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            with contextlib.suppress(psutil.Error):
                proc.wait(0)  # reaps it if it is our child (e.g. in tests)
            return None
        return proc if HOLDER_MODULE in proc.cmdline() else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _server_of(holder: psutil.Process) -> psutil.Process | None:
    """The server the holder recorded, if it still looks like one (PIDs get reused)."""
    try:
        argv = holder.cmdline()
        ready = Path(argv[argv.index("--ready-file") + 1])
        server = psutil.Process(int(json.loads(ready.read_text())["server_pid"]))
        name = server.name()
    except (psutil.Error, OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return server if any(known in name for known in _SERVER_NAMES) else None


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_dead(proc: psutil.Process, timeout_s: float) -> bool:
    """True once ``proc`` is gone; a zombie counts as gone (a slow init may reap it late)."""
    deadline = time.monotonic() + timeout_s
    while _alive(proc) and time.monotonic() < deadline:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
            proc.wait(_POLL_S)  # also reaps it when it is our own child
    return not _alive(proc)


def _ensure_gone(proc: psutil.Process, grace_s: float) -> None:
    """Wait ``grace_s`` for ``proc`` to exit, then SIGKILL it."""
    if _wait_dead(proc, grace_s):
        return
    logger.warning("pid %d still running after %gs; sending SIGKILL", proc.pid, grace_s)
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.kill()
    if not _wait_dead(proc, 5.0):
        raise EmbeddedStopError(f"pid {proc.pid} survived SIGKILL")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: TIME_WAIT leftovers are not "in use"; a listener still is.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
