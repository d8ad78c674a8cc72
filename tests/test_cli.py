"""The CLI: settings from the environment, one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from deploy.processes import free_port
from folio.settings import Settings


def folio(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FOLIO_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "folio.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("folio: error:")
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("FOLIO_HOME", str(tmp_path))
    monkeypatch.setenv("FOLIO_TOPICS__TICKS", "prod.ticks")
    monkeypatch.setenv("FOLIO_KAFKA_CONFIG", json.dumps({"security.protocol": "SASL_SSL"}))
    monkeypatch.setenv("FOLIO_PROVIDER_PRIORITY", '["beta", "alpha"]')
    monkeypatch.setenv("FOLIO_POSTGRES_DSN", "postgresql://u:hunter2@db/folio")
    s = Settings()
    assert s.topics.ticks == "prod.ticks"
    assert s.topics.prices == "market.prices"
    assert s.kafka_client_config()["security.protocol"] == "SASL_SSL"
    assert s.provider_priority == ["beta", "alpha"]
    assert s.clickhouse_url() == f"chdb://{tmp_path / 'clickhouse'}"
    assert "hunter2" not in repr(s)


def test_invalid_setting_is_rejected(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FOLIO_WINDOW_LIVE_MS", "-5")
    with pytest.raises(ValidationError):
        Settings()


def test_bad_arguments_give_one_line_and_exit_2():
    assert_one_line_error(folio("run", "--workers", "zero"), "--workers")
    assert_one_line_error(folio("no-such-command"), "No such command")
    assert_one_line_error(folio("feed", "simulate", "--rate", "-1"), "--rate")


def test_bad_setting_gives_one_line(tmp_path: Path):
    result = folio(
        "stack", "status", env={"FOLIO_WINDOW_LIVE_MS": "abc", "FOLIO_HOME": str(tmp_path)}
    )
    assert_one_line_error(result, "FOLIO_WINDOW_LIVE_MS")


def test_unreachable_services_give_one_line(tmp_path: Path):
    dead = f"127.0.0.1:{free_port()}"
    env = {"FOLIO_HOME": str(tmp_path), "FOLIO_KAFKA_BOOTSTRAP": dead, "FOLIO_METRICS_PORT": "0"}
    assert_one_line_error(folio("run", "--exit-at-end", env=env), "Kafka")
    assert_one_line_error(folio("feed", "simulate", "--count", "1", env=env), "Kafka")
    pg_env = {**env, "FOLIO_POSTGRES_DSN": f"postgresql://postgres@127.0.0.1:{free_port()}/x"}
    assert_one_line_error(folio("migrate", env=pg_env), "Kafka")


def test_help_for_every_command():
    for args in (
        ["--help"],
        ["stack", "--help"],
        ["run", "--help"],
        ["demo", "--help"],
        ["migrate", "--help"],
        ["sql", "--help"],
        ["feed", "simulate", "--help"],
    ):
        result = folio(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert "Usage" in result.stdout


def test_schemas_export(tmp_path: Path):
    result = folio("schemas", "export", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "market.ticks.schema.json").exists()
