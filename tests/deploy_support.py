"""Shared helpers for the deployment-file tests (``tests/test_deploy_*.py``).


Docker and Kubernetes are not needed: these tests hold the files to what the
code defines. Every ``FOLIO_*`` name is a field of ``Settings`` and every value
validates; every ``folio ...`` command line parses with the real CLI; every
``folio_*`` metric in a query or alert is defined in a ``metrics.py`` module;
services, ports, probes, volumes and selectors refer to things that exist. The
StatefulSet entrypoint script is run for real (with ``folio`` and ``getent``
stubbed) to check process ids, addresses and the recovery partition split.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from prometheus_client import REGISTRY
from pydantic import BaseModel, SecretStr

from folio.cli import app
from folio.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "folio-dashboard.json"
GRAFANA_PROVISIONING = DEPLOY / "grafana" / "provisioning"
FOLIO_IMAGES = ("folio-stream:",)

# Metrics of Prometheus itself that alert rules may use.
PROMETHEUS_BUILTIN_METRICS = frozenset({"up"})
# Service locations: inside a container the 127.0.0.1 defaults are wrong.
LOCATION_SETTINGS = ("kafka_bootstrap", "redis_url", "postgres_dsn", "clickhouse_dsn")
FOLIO_ENV_NAME = re.compile(r"\bFOLIO_[A-Z0-9_]+\b")
FOLIO_METRIC = re.compile(r"\bfolio_[a-z0-9_]+\b")
INTERPOLATION = re.compile(r"\$\{([A-Za-z0-9_]+)(?::?-([^}]*))?\}")
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


# --- loading -----------------------------------------------------------------


def load_yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services


def k8s_docs() -> list[dict[str, Any]]:
    return [doc for path in K8S_FILES for doc in load_yaml_docs(path)]


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in k8s_docs() if doc["kind"] == kind]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with an empty environment: the default."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def env_dict(environment: Any) -> dict[str, str]:
    """Compose ``environment`` (mapping or ``KEY=VALUE`` list) as strings."""
    if environment is None:
        return {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


# --- what the code defines ---------------------------------------------------


def project_packages() -> list[str]:
    """Top-level packages the wheel (and so the image) contains."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return [pattern.rstrip("*") for pattern in patterns]


def metrics_modules() -> list[str]:
    """Every ``metrics.py`` of the project's packages, as module names."""
    return [
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for package in project_packages()
        for path in sorted((ROOT / package).rglob("metrics.py"))
    ]


def defined_metric_names() -> set[str]:
    """Series names the code can expose (family name plus the type's suffixes)."""
    for module in metrics_modules():
        importlib.import_module(module)
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SAMPLE_SUFFIXES.get(family.type, ("",)))
    return names


def cli_commands() -> dict[str, Any]:
    root = typer.main.get_command(app)
    commands: dict[str, Any] = root.commands  # type: ignore[attr-defined]
    return commands


def parse_folio_argv(argv: list[str]) -> str:
    """Parse ``folio ARGV`` with the real CLI (without running it); returns the
    command path, e.g. ``"run"`` or ``"feed simulate"``. Raises on any usage
    error: unknown command, unknown option, bad value."""
    assert argv, "empty folio command line"
    commands = cli_commands()
    path: list[str] = []
    rest = list(argv)
    command: Any = None
    while command is None or hasattr(command, "commands"):
        group = commands if command is None else command.commands
        name = rest.pop(0)
        assert name in group, f"`folio {' '.join([*path, name])}` is not a folio command"
        command, path = group[name], [*path, name]
    command.make_context(f"folio {' '.join(path)}", rest)
    return " ".join(path)


def setting_for_env(name: str) -> tuple[str, ...] | None:
    """``FOLIO_TOPICS__TICKS`` -> ("topics", "ticks") if Settings has it, else None."""
    parts = tuple(name.removeprefix("FOLIO_").lower().split("__"))
    model: type[BaseModel] = Settings
    for index, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        if index == len(parts) - 1:
            return parts
        annotation = field.annotation
        if typing.get_origin(annotation) is dict:
            return parts  # any key of a dict setting (e.g. FOLIO_KAFKA_CONFIG__...)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return None


def top_setting(name: str) -> str:
    """The Settings field an env var sets (``FOLIO_TOPICS__TICKS`` -> ``topics``)."""
    path = setting_for_env(name)
    assert path is not None, f"{name} is not a setting"
    return path[0]


def secret_settings() -> set[str]:
    """Settings typed ``SecretStr`` (or ``SecretStr | None``)."""
    return {
        name
        for name, field in Settings.model_fields.items()
        if field.annotation is SecretStr or SecretStr in typing.get_args(field.annotation)
    }


def settings_from(env: dict[str, str]) -> Settings:
    """``Settings`` from exactly the given environment (no FOLIO_* leaks in);
    the process environment is restored afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("FOLIO_"):
                patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        return Settings()


# --- every file parses ---------------------------------------------------------


def deploy_files(*suffixes: str) -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix in suffixes)


def compose_folio_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose_services().items()
        if str(service.get("image", "")).startswith(FOLIO_IMAGES)
    }


def k8s_settings_env() -> tuple[dict[str, str], dict[str, str]]:
    (config_map,) = k8s_kind("ConfigMap")
    (secret,) = k8s_kind("Secret")
    return dict(config_map["data"]), dict(secret["stringData"])
