"""``deploy/k8s/`` against the code: names, selectors, ports, probes, the
migrate job and the flow StatefulSet (its entrypoint script is run for real,
with ``folio`` and ``getent`` stubbed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy_support import (
    k8s_docs,
    k8s_kind,
    k8s_settings_env,
    parse_folio_argv,
)


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
