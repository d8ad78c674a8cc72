"""The deployment files (compose, k8s, Dockerfile, Prometheus, Grafana) against the code.

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
import subprocess
import sys
import tomllib
import typing
from collections.abc import Iterator
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


@pytest.fixture
def settings_from(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Build ``Settings`` from exactly the given environment (no FOLIO_* leaks in)."""

    def build(env: dict[str, str]) -> Settings:
        for key in list(os.environ):
            if key.startswith("FOLIO_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return Settings()

    return build


# --- every file parses ---------------------------------------------------------


def deploy_files(*suffixes: str) -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix in suffixes)


def test_every_yaml_and_json_file_parses() -> None:
    yaml_files = deploy_files(".yaml", ".yml")
    json_files = deploy_files(".json")
    assert COMPOSE in yaml_files and ALERTS in yaml_files and DASHBOARD in json_files
    assert len(K8S_FILES) >= 4
    for path in yaml_files:
        docs = load_yaml_docs(path)
        assert docs and all(isinstance(doc, dict) for doc in docs), path
    for path in json_files:
        assert isinstance(json.loads(path.read_text()), dict), path


# --- FOLIO_* settings ----------------------------------------------------------


def files_with_settings() -> list[Path]:
    return [COMPOSE, DOCKERFILE, *K8S_FILES]


def test_every_folio_env_var_is_a_settings_field() -> None:
    used = {
        (path.name, name)
        for path in files_with_settings()
        for name in FOLIO_ENV_NAME.findall(path.read_text())
    }
    assert len({name for _, name in used}) >= 8
    unknown = sorted(f"{name} ({file})" for file, name in used if setting_for_env(name) is None)
    assert not unknown, f"not fields of folio.settings.Settings: {unknown}"


def test_setting_name_mapping_rejects_what_settings_ignores() -> None:
    # Settings has extra="ignore": a misspelt FOLIO_ variable is silently
    # dropped at run time, so this mapping is the only guard.
    assert setting_for_env("FOLIO_TOPICS__TICKS") == ("topics", "ticks")
    assert setting_for_env("FOLIO_KAFKA_CONFIG__SASL_MECHANISM") is not None
    assert setting_for_env("FOLIO_TOPICS__NOPE") is None
    assert setting_for_env("FOLIO_REDIS_URL__X") is None
    assert setting_for_env("FOLIO_REDIS_ULR") is None


def compose_folio_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose_services().items()
        if str(service.get("image", "")).startswith(FOLIO_IMAGES)
    }


def check_deployed_settings(settings: Settings) -> None:
    for name in LOCATION_SETTINGS:
        value = getattr(settings, name)
        assert value is not None, f"{name} is not set"
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        assert "127.0.0.1" not in text and "localhost" not in text, f"{name}={text}"
    # Several processes share ClickHouse: it must be a server, not chDB.
    assert settings.clickhouse_url().startswith(("http://", "https://"))
    assert settings.metrics_host == "0.0.0.0"
    assert settings.fanout_host == "0.0.0.0"


def test_compose_settings_validate_and_point_at_the_services(settings_from: Any) -> None:
    folio_services = compose_folio_services()
    assert set(folio_services) >= {"migrate", "flow", "fanout"}
    for name, service in folio_services.items():
        env = {k: interpolate(v) for k, v in env_dict(service.get("environment")).items()}
        settings = settings_from(env)
        check_deployed_settings(settings)
        assert settings.kafka_bootstrap.split(":")[0] in compose_services(), name


def k8s_settings_env() -> tuple[dict[str, str], dict[str, str]]:
    (config_map,) = k8s_kind("ConfigMap")
    (secret,) = k8s_kind("Secret")
    return dict(config_map["data"]), dict(secret["stringData"])


def test_k8s_settings_validate_and_secrets_stay_in_the_secret(settings_from: Any) -> None:
    config, secret = k8s_settings_env()
    check_deployed_settings(settings_from({**config, **secret}))
    secrets = secret_settings()
    assert {"redis_url", "postgres_dsn", "jwt_secret"} <= secrets
    in_config = {top_setting(name) for name in config}
    in_secret = {top_setting(name) for name in secret}
    assert not in_config & secrets, f"secret settings in the ConfigMap: {in_config & secrets}"
    assert in_secret <= secrets, f"plain settings in the Secret: {in_secret - secrets}"
    # Compose and Kubernetes configure the same settings.
    compose_env = env_dict(compose_services()["flow"]["environment"])
    assert set(compose_env) == set(config) | set(secret)


# --- compose -------------------------------------------------------------------


def test_compose_services_have_an_image_or_build() -> None:
    services = compose_services()
    assert set(services) >= {
        "kafka",
        "redis",
        "postgres",
        "clickhouse",
        "migrate",
        "flow",
        "fanout",
        "prometheus",
        "grafana",
    }
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert context == ROOT, name
            assert (context / build["dockerfile"]).resolve() == DOCKERFILE, name


def is_one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def test_compose_depends_on_names_services_with_the_right_condition() -> None:
    services = compose_services()
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: use the long form with a condition"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            else:
                assert condition == "service_completed_successfully", (name, condition)
                assert is_one_shot(services[target]), f"{target} is not a one-shot"


def test_compose_long_running_services_have_a_healthcheck() -> None:
    for name, service in compose_services().items():
        if is_one_shot(service):
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
        assert service.get("restart") == "unless-stopped", name


def test_compose_folio_commands_are_real_subcommands() -> None:
    commands = {
        name: parse_folio_argv(s["command"]) for name, s in compose_folio_services().items()
    }
    assert commands == {"migrate": "migrate", "flow": "run", "fanout": "serve"}


def served_port(service: dict[str, Any], settings: Settings) -> int:
    """The port a folio service listens on, from its command and settings."""
    command = service["command"][0]
    return {"run": settings.metrics_port, "serve": settings.fanout_port}[command]


def test_compose_ports_agree_with_settings(settings_from: Any) -> None:
    services = compose_folio_services()
    scrape = yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]
    targets = {t for job in scrape for c in job["static_configs"] for t in c["targets"]}
    for name in ("flow", "fanout"):
        service = services[name]
        env = {k: interpolate(v) for k, v in env_dict(service["environment"]).items()}
        port = served_port(service, settings_from(env))
        assert f"{name}:{port}" in targets, f"Prometheus does not scrape {name}:{port}"
        assert f"127.0.0.1:{port}/" in " ".join(service["healthcheck"]["test"]), name
    for target in targets:
        host = target.split(":")[0]
        assert host == "127.0.0.1" or host in compose_services(), target


def test_compose_volumes_exist() -> None:
    spec = compose()
    declared = set(spec.get("volumes") or {})
    for name, service in spec["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} not declared"
    flow = spec["services"]["flow"]
    recovery_dir = flow["command"][flow["command"].index("--recovery-dir") + 1]
    assert any(v.split(":")[1] == recovery_dir for v in flow["volumes"])


# --- Dockerfile ------------------------------------------------------------------


def test_dockerfile_installs_every_package_and_runs_folio() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.12-slim\b", text, re.M)
    assert 'ENTRYPOINT ["folio"]' in text
    assert re.search(r"pip install \.$", text, re.M)
    copied = set()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        *sources, _dest = line.split()
        for source in sources:
            if not re.search(r"[\[*?]", source):
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            copied.add(source)
    for package in project_packages():
        assert package in copied, f"package {package} is not copied into the image"
    assert "pyproject.toml" in copied


# --- Kubernetes ------------------------------------------------------------------


def workloads() -> list[dict[str, Any]]:
    return [d for d in k8s_docs() if d["kind"] in {"Deployment", "StatefulSet", "Job"}]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_k8s_objects_are_named_and_namespaced() -> None:
    namespaces = {d["metadata"]["name"] for d in k8s_kind("Namespace")}
    kinds = {d["kind"] for d in k8s_docs()}
    assert kinds >= {"ConfigMap", "Secret", "Job", "StatefulSet", "Deployment", "Service"}
    for doc in k8s_docs():
        assert doc["apiVersion"] and doc["metadata"]["name"], doc
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] in namespaces, doc["metadata"]["name"]


def test_k8s_services_select_pods_and_named_ports() -> None:
    for service in k8s_kind("Service"):
        selector = service["spec"]["selector"]
        matched = [
            w
            for w in workloads()
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matched, f"Service {service['metadata']['name']} selects no pods"
        ports = {p["name"] for w in matched for c in containers(w) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)


def test_k8s_containers_reference_existing_config_ports_and_volumes() -> None:
    names = {(d["kind"], d["metadata"]["name"]) for d in k8s_docs()}
    for workload in workloads():
        pod = workload["spec"]["template"]["spec"]
        volumes = {v["name"] for v in pod.get("volumes", [])}
        volumes |= {v["metadata"]["name"] for v in workload["spec"].get("volumeClaimTemplates", [])}
        for container in containers(workload):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert ("ConfigMap", source["configMapRef"]["name"]) in names
                if "secretRef" in source:
                    assert ("Secret", source["secretRef"]["name"]) in names
            ports = {p["name"] for p in container.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                if probe in container:
                    assert container[probe]["httpGet"]["port"] in ports, probe
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, mount


def test_k8s_fanout_probes_healthz_and_runs_serve() -> None:
    (deployment,) = k8s_kind("Deployment")
    (container,) = containers(deployment)
    assert parse_folio_argv(container["args"]) == "serve"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    config, _ = k8s_settings_env()
    assert container["ports"][0]["containerPort"] == int(config["FOLIO_FANOUT_PORT"])


def test_k8s_migrate_job_runs_migrate() -> None:
    (job,) = k8s_kind("Job")
    (container,) = containers(job)
    assert parse_folio_argv(container["args"]) == "migrate"


def flow_statefulset() -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    (statefulset,) = k8s_kind("StatefulSet")
    (container,) = containers(statefulset)
    env = {item["name"]: item["value"] for item in container["env"]}
    return statefulset, container, env


def test_k8s_flow_statefulset_is_consistent() -> None:
    statefulset, container, env = flow_statefulset()
    spec = statefulset["spec"]
    services = {s["metadata"]["name"]: s for s in k8s_kind("Service")}
    headless = services[spec["serviceName"]]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert spec["podManagementPolicy"] == "Parallel"
    assert int(env["FLOW_PROCESSES"]) == spec["replicas"]
    assert env["FLOW_SERVICE"] == spec["serviceName"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(env["FLOW_PORT"]) == ports["cluster"]
    config, _ = k8s_settings_env()
    assert ports["metrics"] == int(config["FOLIO_METRICS_PORT"])
    assert int(env["FLOW_RECOVERY_PARTITIONS"]) >= spec["replicas"]
    claims = {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[env["FLOW_RECOVERY_DIR"]] in claims


@pytest.fixture
def flow_pod(tmp_path: Path) -> Iterator[Any]:
    """Run the StatefulSet's entrypoint script as pod ``ordinal`` with ``folio``
    and ``getent`` stubbed. Returns the finished process; the argv ``folio``
    was called with is in ``argv-<ordinal>`` under ``tmp_path``."""
    statefulset, container, env = flow_statefulset()
    assert container["command"] == ["/bin/sh", "-c"]
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "folio").write_text('#!/bin/sh\nprintf "%s\\0" "$@" > "$FOLIO_ARGV_OUT"\n')
    (stubs / "getent").write_text("#!/bin/sh\nexit 0\n")
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    path = os.pathsep.join([str(stubs), str(Path(sys.executable).parent), os.environ["PATH"]])

    def run(ordinal: int, recovery: Path) -> subprocess.CompletedProcess[str]:
        recovery.mkdir(exist_ok=True)
        pod_env = {
            **env,
            "HOSTNAME": f"{statefulset['metadata']['name']}-{ordinal}",
            "FLOW_RECOVERY_DIR": str(recovery),
            "FOLIO_ARGV_OUT": str(tmp_path / f"argv-{ordinal}"),
            "PATH": path,
            "TMPDIR": str(tmp_path),
        }
        return subprocess.run(
            ["/bin/sh", "-c", container["args"][0]],
            env=pod_env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    yield run


def folio_argv(tmp_path: Path, ordinal: int) -> list[str]:
    return (tmp_path / f"argv-{ordinal}").read_text().split("\0")[:-1]


def test_k8s_flow_entrypoint_derives_ids_addresses_and_splits_recovery(
    flow_pod: Any, tmp_path: Path
) -> None:
    statefulset, _, env = flow_statefulset()
    replicas, partitions = statefulset["spec"]["replicas"], int(env["FLOW_RECOVERY_PARTITIONS"])
    name, service, port = statefulset["metadata"]["name"], env["FLOW_SERVICE"], env["FLOW_PORT"]
    expected_addresses = ";".join(f"{name}-{i}.{service}:{port}" for i in range(replicas))
    held: dict[int, set[int]] = {}
    for ordinal in range(replicas):
        recovery = tmp_path / f"recovery-{ordinal}"
        result = flow_pod(ordinal, recovery)
        assert result.returncode == 0, result.stderr
        argv = folio_argv(tmp_path, ordinal)
        assert parse_folio_argv(argv) == "run"
        options = dict(zip(argv[1::2], argv[2::2], strict=True))
        assert options["--process-id"] == str(ordinal)
        assert options["--addresses"] == expected_addresses
        assert options["--recovery-dir"] == str(recovery)
        held[ordinal] = {int(p.name[5:-8]) for p in recovery.glob("part-*.sqlite3")}
        assert held[ordinal], f"pod {ordinal} holds no recovery partition"
    # The cluster as a whole holds every partition exactly once.
    all_held = [p for parts in held.values() for p in parts]
    assert sorted(all_held) == list(range(partitions))
    # A restart keeps the partitions it has (they carry the snapshots).
    part = next((tmp_path / "recovery-0").glob("part-*.sqlite3"))
    part.write_bytes(part.read_bytes() + b"snapshot")
    assert flow_pod(0, tmp_path / "recovery-0").returncode == 0
    assert part.read_bytes().endswith(b"snapshot")
    assert {int(p.name[5:-8]) for p in (tmp_path / "recovery-0").glob("part-*.sqlite3")} == held[0]


def test_k8s_flow_entrypoint_refuses_an_ordinal_beyond_the_cluster(
    flow_pod: Any, tmp_path: Path
) -> None:
    statefulset, _, _ = flow_statefulset()
    beyond = statefulset["spec"]["replicas"]
    result = flow_pod(beyond, tmp_path / "recovery")
    assert result.returncode == 2 and "FLOW_PROCESSES" in result.stderr
    assert not (tmp_path / f"argv-{beyond}").exists()


# --- commands ------------------------------------------------------------------


def test_cli_parser_rejects_unknown_commands_and_options() -> None:
    assert parse_folio_argv(["run", "--workers", "2", "--recovery-dir", "/r"]) == "run"
    assert parse_folio_argv(["feed", "simulate", "--symbols", "3"]) == "feed simulate"
    for bad in (["nope"], ["run", "--wrokers", "2"], ["run", "--workers", "x"]):
        with pytest.raises(Exception):  # noqa: B017 - any usage error will do
            parse_folio_argv(bad)


# --- metrics: Prometheus rules and Grafana -------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_panels() -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]


def test_metric_registry_covers_every_area() -> None:
    names = defined_metric_names()
    for expected in (
        "folio_ingest_ticks_in_total",
        "folio_source_position",
        "folio_sink_batch_seconds_bucket",
        "folio_fanout_connections",
    ):
        assert expected in names
    assert "folio_sink_batch_seconds" not in names  # a histogram has no bare series


def test_alert_rules_use_defined_metrics() -> None:
    defined = defined_metric_names()
    rules = alert_rules()
    wanted = {
        "FolioConsumerLagHigh",
        "FolioDlqRateHigh",
        "FolioSinkErrors",
        "FolioStaleFeed",
        "FolioSlowClientsDisconnected",
    }
    assert wanted <= {r["alert"] for r in rules}
    for rule in rules:
        used = set(FOLIO_METRIC.findall(rule["expr"]))
        builtin = {m for m in PROMETHEUS_BUILTIN_METRICS if re.search(rf"\b{m}\b", rule["expr"])}
        assert used or builtin, f"{rule['alert']} uses no known metric"
        assert used <= defined, f"{rule['alert']}: undefined {sorted(used - defined)}"
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_alert_jobs_match_scrape_jobs() -> None:
    jobs = {j["job_name"] for j in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]}
    assert {"folio-flow", "folio-fanout"} <= jobs
    assert yaml.safe_load(PROMETHEUS.read_text())["rule_files"] == [ALERTS.name]
    for rule in alert_rules():
        for pattern in re.findall(r'job=~"([^"]+)"', rule["expr"]):
            assert any(re.fullmatch(pattern, job) for job in jobs), rule["alert"]


def test_dashboard_uses_defined_metrics() -> None:
    defined = defined_metric_names()
    exprs = dashboard_exprs()
    used = {name for expr in exprs for name in FOLIO_METRIC.findall(expr)}
    assert all(FOLIO_METRIC.search(expr) for expr in exprs)
    assert not used - defined, f"undefined metrics in the dashboard: {sorted(used - defined)}"
    for needed in (
        "folio_ingest_ticks_in_total",
        "folio_ingest_prices_out_total",
        "folio_ingest_candles_out_total",
        "folio_ingest_rejected_total",
        "folio_dead_letters_total",
        "folio_source_high_watermark",
        "folio_source_position",
        "folio_ingest_event_time_lag_seconds",
        "folio_sink_batch_seconds_bucket",
        "folio_sink_errors_total",
        "folio_fanout_connections",
        "folio_fanout_messages_delivered_total",
        "folio_fanout_slow_client_disconnects_total",
    ):
        assert needed in used, f"the dashboard does not show {needed}"


def test_dashboard_panels_and_provisioning_agree() -> None:
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    (datasource,) = yaml.safe_load(
        (GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert all(t["datasource"]["uid"] == datasource["uid"] for t in panel["targets"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
    (provider,) = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards" / "folio.yml").read_text())[
        "providers"
    ]
    mounts = [v.split(":") for v in compose_services()["grafana"]["volumes"]]
    mounted = {(DEPLOY / src).resolve(): Path(dst) for src, dst, *_ in mounts if src[0] == "."}
    assert mounted[DASHBOARD].parent == Path(provider["options"]["path"])
    assert mounted[GRAFANA_PROVISIONING.resolve()] == Path("/etc/grafana/provisioning")
