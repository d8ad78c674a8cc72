"""Embedded Valkey/Postgres fallbacks: real holder processes, real servers, real clients."""

from __future__ import annotations

import socket
import subprocess
from decimal import Decimal
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from deploy.embedded import (
    EmbeddedStartError,
    holder_running,
    ready_file_for,
    start_embedded_postgres,
    start_embedded_redis,
    stop_embedded,
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_redis_set_get_stop_and_restart_keeps_data(tmp_path: Path) -> None:
    port = _free_port()
    data_dir, log = tmp_path / "redis", tmp_path / "redis.log"
    service = start_embedded_redis(data_dir, port, log)
    try:
        assert service.url == f"redis://127.0.0.1:{port}/0"
        assert "valkey" in psutil.Process(service.server_pid).name()
        client = redis.Redis.from_url(service.url)
        client.set("folio_t:key", "value")
        assert client.get("folio_t:key") == b"value"
        client.close()
        assert holder_running(service.pid)
        assert ready_file_for(data_dir).exists()
        # a second start on the same data dir finds the running holder
        assert start_embedded_redis(data_dir, port, log).pid == service.pid
    finally:
        assert stop_embedded(service.pid)
    assert _gone(service.pid)
    assert _gone(service.server_pid)
    assert _port_free(port)
    assert not ready_file_for(data_dir).exists()
    assert stop_embedded(service.pid) is False

    again = start_embedded_redis(data_dir, port, log)
    try:
        assert again.pid != service.pid
        assert redis.Redis.from_url(again.url).get("folio_t:key") == b"value"
    finally:
        assert stop_embedded(again.pid)
    assert _gone(again.server_pid)


def test_postgres_table_roundtrip_stop_and_restart_keeps_data(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "pg", tmp_path / "pg.log"
    service = start_embedded_postgres(data_dir, log, database="folio_t")
    try:
        with psycopg.connect(service.url, autocommit=True) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("folio_t",)
            conn.execute("CREATE TABLE holdings (id int PRIMARY KEY, qty numeric NOT NULL)")
            conn.execute("INSERT INTO holdings VALUES (1, 12.50)")
        postmaster = psutil.Process(service.server_pid)
        assert postmaster.name() == "postgres"
        workers = [proc.pid for proc in postmaster.children()]
        assert workers  # checkpointer, walwriter, ...
    finally:
        assert stop_embedded(service.pid)
    assert _gone(service.pid)
    assert all(_gone(pid) for pid in [service.server_pid, *workers])
    assert not (data_dir / "postmaster.pid").exists()

    again = start_embedded_postgres(data_dir, log, database="folio_t")
    try:
        with psycopg.connect(again.url) as conn:
            assert conn.execute("SELECT qty FROM holdings").fetchall() == [(Decimal("12.50"),)]
    finally:
        assert stop_embedded(again.pid)
    assert _gone(again.server_pid)


def test_redis_on_a_busy_port_fails_with_the_reason(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(EmbeddedStartError, match=f"port {port} is already in use"):
            start_embedded_redis(tmp_path / "redis", port, tmp_path / "redis.log")
    assert not ready_file_for(tmp_path / "redis").exists()


def test_stop_ignores_pids_that_are_not_holders() -> None:
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        assert stop_embedded(bystander.pid) is False
        assert not holder_running(bystander.pid)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
