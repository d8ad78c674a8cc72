"""Service faults: Postgres or Redis taken away during a run (every
connection reset, new ones refused for a few seconds, then connections reset
again mid-batch) through a loopback TCP proxy the test controls. The sinks
retry with backoff, nothing is lost or doubled: the stores end exactly as a
fault-free run of the same input leaves them, and the outage shows in
``folio_sink_errors_total`` and in the logs.

The flow runs in this process (``run_main``); the outage is 3 s here, the
chaos bench (``python -m benchmarks.chaos_bench --outage 10``) runs 10 s.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
import pytest
import redis
from bytewax.testing import run_main
from prometheus_client import REGISTRY
from pydantic import SecretStr

from benchmarks.chaos_compare import compare, diff_examples
from benchmarks.chaos_harness import publish_workload
from benchmarks.chaos_workload import Workload
from benchmarks.tcp_proxy import TcpProxy
from folio.settings import Settings
from folio.wiring import pipeline_flow
from sinks.clickhouse.client import ClickHouseClient
from tests.conftest import REDIS_URL
from tests.test_recovery_support import snapshot, variant

WORKLOAD = Workload(ticks=5_000, txns=200, symbols=10, portfolios=20, ticks_per_s=25)
OUTAGE_S = 3.0
SINKS = {
    "postgres": ("postgres:ledger", "postgres:latest_valuations", "postgres:alerts"),
    "redis": ("redis:prices", "redis:valuations", "redis:alerts"),
}
UPSTREAM_PORT = {"postgres": 5432, "redis": 6379}


def through(proxy: TcpProxy, service: str, settings: Settings) -> Settings:
    """``settings`` with ``service`` reached through ``proxy``."""
    where = f"127.0.0.1:{proxy.port}"
    if service == "postgres":
        dbname = psycopg.conninfo.conninfo_to_dict(settings.postgres_dsn.get_secret_value())
        dsn = f"postgresql://postgres@{where}/{dbname['dbname']}"
        return settings.model_copy(update={"postgres_dsn": SecretStr(dsn)})
    return settings.model_copy(update={"redis_url": SecretStr(f"redis://{where}/0")})


def first_write_seen(service: str, target: Settings) -> bool:
    if service == "postgres":
        with psycopg.connect(target.postgres_dsn.get_secret_value()) as conn:
            [(count,)] = conn.execute("SELECT count(*) FROM transactions").fetchall()
        return bool(count)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return any(True for _ in client.scan_iter(f"{target.redis_prefix}:price:*"))
    finally:
        client.close()


def inject(service: str, target: Settings, proxy: TcpProxy, done: threading.Event) -> None:
    """Once the flow wrote to the service: cut it for OUTAGE_S, then reset
    the connections three times while the flow writes again."""
    while not done.is_set() and not first_write_seen(service, target):
        time.sleep(0.05)
    if done.is_set():
        return
    proxy.outage(OUTAGE_S, settle_s=0.3)


def errors(sink: str) -> float:
    labels = {"sink": sink, "kind": "unavailable"}
    return REGISTRY.get_sample_value("folio_sink_errors_total", labels) or 0.0


@pytest.mark.parametrize("service", ["postgres", "redis"])
def test_outage_and_resets_lose_nothing(
    service: str,
    settings: Settings,
    clickhouse: ClickHouseClient,
    engine: ClickHouseClient,
    caplog: pytest.LogCaptureFixture,
):
    publish_workload(settings.kafka_bootstrap, settings.topics, WORKLOAD)
    run_main(pipeline_flow(settings, exit_at_end=True, clickhouse=clickhouse))
    reference = snapshot(settings, clickhouse)

    caplog.set_level(logging.INFO, logger="sinks.retry")
    before = {sink: errors(sink) for sink in SINKS[service]}
    with variant(settings, engine, "f") as target, TcpProxy(UPSTREAM_PORT[service]) as proxy:
        done = threading.Event()
        chaos = threading.Thread(target=inject, args=(service, target.settings, proxy, done))
        chaos.start()
        try:
            flow = pipeline_flow(through(proxy, service, target.settings), True, target.clickhouse)
            run_main(flow)
        finally:
            done.set()
            chaos.join()
        got = snapshot(target.settings, target.clickhouse)

    assert len(proxy.stats.cuts) == 1 and proxy.stats.resets >= 1
    failed = {sink for sink in SINKS[service] if errors(sink) > before[sink]}
    assert failed, "the outage did not reach any sink's retry loop"
    retried = {
        getattr(r, "sink", "")
        for r in caplog.records
        if r.getMessage() == "sink_unavailable_retrying"
    }
    recovered = {
        getattr(r, "sink", "") for r in caplog.records if r.getMessage() == "sink_recovered"
    }
    assert failed <= retried and failed <= recovered

    diffs = compare(reference, got)
    wrong = {t: d for t, d in diffs.items() if d.mismatches}
    assert not wrong, "\n".join([str(wrong), *diff_examples(reference, got)])
    assert len(reference["postgres.transactions"]) > 100 and reference["redis.price"]
