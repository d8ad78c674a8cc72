"""``deploy/compose.yaml`` and the Dockerfile against the code: images, health
checks, ``depends_on`` conditions, real ``folio`` subcommands, ports, volumes.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from folio.settings import Settings
from tests.deploy_support import (
    DEPLOY,
    DOCKERFILE,
    PROMETHEUS,
    ROOT,
    compose,
    compose_folio_services,
    compose_services,
    env_dict,
    interpolate,
    parse_folio_argv,
    project_packages,
    settings_from,
)


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


def test_compose_ports_agree_with_settings() -> None:
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
