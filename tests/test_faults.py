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
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest
import redis
from bytewax.testing import run_main
from prometheus_client import REGISTRY
from psycopg import sql
from pydantic import SecretStr

from benchmarks.chaos_compare import (
    PROCESSING_TIME_TABLES,
    Snapshot,
    clickhouse_rows,
    compare,
    diff_examples,
    kafka_snapshot,
    postgres_snapshot,
    redis_snapshot,
)
from benchmarks.chaos_harness import publish_workload
from benchmarks.chaos_workload import Workload
from benchmarks.tcp_proxy import TcpProxy
from connectors.kafka.admin import ensure_topics
from folio.settings import Settings, TopicNames
from folio.wiring import pipeline_flow, topic_partitions
from sinks.clickhouse.client import ClickHouseClient
from sinks.clickhouse.schema import apply_schema
from sinks.postgres.migrate import apply_migrations
from tests.conftest import PG_ADMIN

WORKLOAD = Workload(ticks=5_000, txns=200, symbols=10, portfolios=20, ticks_per_s=25)
OUTAGE_S = 3.0
SINKS = {
    "postgres": ("postgres:ledger", "postgres:latest_valuations", "postgres:alerts"),
    "redis": ("redis:prices", "redis:valuations", "redis:alerts"),
}
UPSTREAM_PORT = {"postgres": 5432, "redis": 6379}


def snapshot(settings: Settings, clickhouse: ClickHouseClient) -> Snapshot:
    snap = postgres_snapshot(settings.postgres_dsn.get_secret_value())
    snap |= redis_snapshot(settings.redis_url.get_secret_value(), settings.redis_prefix)
    snap |= clickhouse_rows(clickhouse)
    snap |= kafka_snapshot(settings.kafka_bootstrap, settings.topics.all())
    return snap


@dataclass
class Faulted:
    settings: Settings  # what the flow uses: the service behind the proxy
    direct: Settings  # the same outputs, not through the proxy (probes, snapshot)
    clickhouse: ClickHouseClient


@pytest.fixture
def faulted(
    settings: Settings, engine: ClickHouseClient, unique: str
) -> Iterator[Callable[[int, str], Faulted]]:
    """Settings for a second run with its own outputs, one service via a proxy."""
    made: list[Faulted] = []

    def make(proxy_port: int, service: str) -> Faulted:
        name = f"folio_t_{unique}_f"
        direct = f"postgresql://postgres@127.0.0.1:5432/{name}"
        apply_migrations(direct)
        topics = TopicNames(**{k: f"{v}.f" for k, v in settings.topics.all().items()})
        topics = topics.model_copy(
            update={k: settings.topics.all()[k] for k in ("ticks", "transactions", "rules")}
        )
        outputs = settings.model_copy(
            update={
                "postgres_dsn": SecretStr(direct),
                "redis_prefix": name,
                "clickhouse_database": name,
                "topics": topics,
            }
        )
        proxied = f"127.0.0.1:{proxy_port}"
        if service == "postgres":
            via = {"postgres_dsn": SecretStr(f"postgresql://postgres@{proxied}/{name}")}
        else:
            via = {"redis_url": SecretStr(f"redis://{proxied}/0")}
        ensure_topics(outputs.kafka_client_config(), topic_partitions(outputs))
        client = engine.for_database(name)
        apply_schema(client)
        made.append(Faulted(outputs.model_copy(update=via), outputs, client))
        return made[-1]

    yield make
    for f in made:
        engine.command(f"DROP DATABASE IF EXISTS `{f.clickhouse.database}` SYNC")
        name = f.settings.redis_prefix
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        keys = list(client.scan_iter(f"{name}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def first_write_seen(service: str, target: Faulted) -> bool:
    if service == "postgres":
        with psycopg.connect(target.direct.postgres_dsn.get_secret_value()) as conn:
            [(count,)] = conn.execute("SELECT count(*) FROM transactions").fetchall()
        return bool(count)
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        return any(True for _ in client.scan_iter(f"{target.settings.redis_prefix}:price:*"))
    finally:
        client.close()


def inject(service: str, target: Faulted, proxy: TcpProxy, done: threading.Event) -> None:
    """Once the flow wrote to the service: cut it for OUTAGE_S, then reset
    the connections three times while the flow writes again."""
    while not done.is_set() and not first_write_seen(service, target):
        time.sleep(0.05)
    if done.is_set():
        return
    proxy.cut(OUTAGE_S)
    time.sleep(OUTAGE_S + 0.5)
    for _ in range(3):
        proxy.reset()
        time.sleep(0.3)


def errors(sink: str) -> float:
    labels = {"sink": sink, "kind": "unavailable"}
    return REGISTRY.get_sample_value("folio_sink_errors_total", labels) or 0.0


@pytest.mark.parametrize("service", ["postgres", "redis"])
def test_outage_and_resets_lose_nothing(
    service: str,
    settings: Settings,
    clickhouse: ClickHouseClient,
    faulted: Callable[[int, str], Faulted],
    caplog: pytest.LogCaptureFixture,
):
    publish_workload(settings.kafka_bootstrap, settings.topics, WORKLOAD)
    run_main(pipeline_flow(settings, exit_at_end=True, clickhouse=clickhouse))
    reference = snapshot(settings, clickhouse)

    caplog.set_level(logging.INFO, logger="sinks.retry")
    before = {sink: errors(sink) for sink in SINKS[service]}
    with TcpProxy(UPSTREAM_PORT[service]) as proxy:
        target = faulted(proxy.port, service)
        done = threading.Event()
        chaos = threading.Thread(target=inject, args=(service, target, proxy, done))
        chaos.start()
        try:
            run_main(pipeline_flow(target.settings, exit_at_end=True, clickhouse=target.clickhouse))
        finally:
            done.set()
            chaos.join()
    got = snapshot(target.direct, target.clickhouse)

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
    wrong = {t: d for t, d in diffs.items() if d.mismatches and t not in PROCESSING_TIME_TABLES}
    assert not wrong, "\n".join([str(wrong), *diff_examples(reference, got)])
    assert len(reference["postgres.transactions"]) > 100 and reference["redis.price"]
