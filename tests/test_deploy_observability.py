"""Prometheus alert rules, scrape jobs and the Grafana dashboard use only
metrics the code defines.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.deploy_support import (
    ALERTS,
    DASHBOARD,
    DEPLOY,
    FOLIO_METRIC,
    GRAFANA_PROVISIONING,
    PROMETHEUS,
    PROMETHEUS_BUILTIN_METRICS,
    compose_services,
    dashboard,
    defined_metric_names,
)


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
