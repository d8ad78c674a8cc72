"""The local stack: up is idempotent, down stops exactly what up started."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from deploy import stack
from deploy.processes import free_port, is_running, port_open

PG = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"


def config(home: Path, kafka_port: int) -> stack.StackConfig:
    return stack.StackConfig(home, f"127.0.0.1:{kafka_port}", REDIS, PG, f"chdb://{home}/ch")


def test_up_is_idempotent_and_down_leaves_nothing(tmp_path: Path):
    port = free_port()
    cfg = config(tmp_path, port)
    first = stack.up(cfg)
    try:
        kafka = first.components["kafka"]
        assert kafka.mode == "started" and kafka.pid is not None
        assert is_running(kafka.pid, "tansu") and port_open("127.0.0.1", port)
        assert first.components["redis"].mode == "external"  # the machine's Redis answers
        assert first.components["postgres"].mode == "external"
        second = stack.up(cfg)
        assert second.components["kafka"].pid == kafka.pid  # reused, not restarted
        assert any("FOLIO_KAFKA_BOOTSTRAP" in line for line in stack.env_lines(second))
        rows = {row[0]: row for row in stack.status(tmp_path)}
        assert rows["kafka"][3].startswith("yes")
    finally:
        stopped = stack.down(tmp_path)
    assert stopped == ["kafka"]
    assert not is_running(kafka.pid)
    assert not port_open("127.0.0.1", port)
    assert stack.status(tmp_path) == []
    assert stack.down(tmp_path) == []  # nothing left to stop


def test_dead_recorded_pid_is_restarted_not_trusted(tmp_path: Path):
    cfg = config(tmp_path, free_port())
    state = stack.up(cfg)
    pid = state.components["kafka"].pid
    assert pid is not None
    os.kill(pid, 9)
    while is_running(pid):  # SIGKILL is delivered asynchronously
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.01)
    try:
        again = stack.up(cfg)
        assert again.components["kafka"].pid != pid
    finally:
        stack.down(tmp_path)


def test_started_by_us_only_names_new_processes(tmp_path: Path):
    before = stack.StackState.load(tmp_path)
    cfg = config(tmp_path, free_port())
    after = stack.up(cfg)
    try:
        assert stack.started_by_us(before, after) == {"kafka"}
        assert stack.started_by_us(after, stack.up(cfg)) == set()
    finally:
        stack.down(tmp_path, only={"kafka"})
    assert (
        not stack.StackState.path(tmp_path).exists()
        or "kafka" not in stack.StackState.load(tmp_path).components
    )


def test_cli_stack_round_trip(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLIO_")}
    env.update(FOLIO_HOME=str(tmp_path), FOLIO_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}")

    def folio(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "folio.cli", "stack", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert folio("up").returncode == 0
    exported = folio("env").stdout
    assert f"export FOLIO_KAFKA_BOOTSTRAP='{env['FOLIO_KAFKA_BOOTSTRAP']}'" in exported
    pid = stack.StackState.load(tmp_path).components["kafka"].pid
    down = folio("down")
    assert down.returncode == 0 and "kafka" in down.stdout
    assert pid is not None and not is_running(pid)
