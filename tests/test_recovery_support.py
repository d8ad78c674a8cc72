"""Helpers for tests that compare two in-process runs of the pipeline: a
second set of outputs (and optionally inputs) next to the ``settings``
fixture's, and a snapshot of everything a run wrote."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import redis
from psycopg import sql
from pydantic import SecretStr

from benchmarks.chaos_compare import (
    Snapshot,
    clickhouse_rows,
    kafka_snapshot,
    postgres_snapshot,
    redis_snapshot,
)
from benchmarks.chaos_harness import INPUTS
from connectors.kafka.admin import ensure_topics
from folio.settings import Settings, TopicNames
from folio.wiring import topic_partitions
from sinks.clickhouse.client import ClickHouseClient
from sinks.clickhouse.schema import apply_schema
from sinks.postgres.migrate import apply_migrations
from tests.conftest import PG_ADMIN, REDIS_URL


def snapshot(settings: Settings, clickhouse: ClickHouseClient) -> Snapshot:
    """Everything a run with ``settings`` wrote (ClickHouse through ``clickhouse``)."""
    snap = postgres_snapshot(settings.postgres_dsn.get_secret_value())
    snap |= redis_snapshot(settings.redis_url.get_secret_value(), settings.redis_prefix)
    snap |= clickhouse_rows(clickhouse)
    snap |= kafka_snapshot(settings.kafka_bootstrap, settings.topics.all())
    return snap


@dataclass(frozen=True)
class Variant:
    settings: Settings
    clickhouse: ClickHouseClient


@contextmanager
def variant(
    settings: Settings, engine: ClickHouseClient, suffix: str, *, own_inputs: bool = False
) -> Iterator[Variant]:
    """``settings`` with its own Postgres database, Redis prefix, ClickHouse
    database and output topics (input topics too with ``own_inputs``);
    dropped afterwards."""
    name = f"{settings.redis_prefix}_{suffix}"
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    topics = {k: f"{v}.{suffix}" for k, v in settings.topics.all().items()}
    if not own_inputs:
        topics |= {k: settings.topics.all()[k] for k in INPUTS}
    other = settings.model_copy(
        update={
            "postgres_dsn": SecretStr(dsn),
            "redis_prefix": name,
            "clickhouse_database": name,
            "topics": TopicNames(**topics),
        }
    )
    apply_migrations(dsn)
    ensure_topics(other.kafka_client_config(), topic_partitions(other))
    client = engine.for_database(name)
    apply_schema(client)
    try:
        yield Variant(other, client)
    finally:
        engine.command(f"DROP DATABASE IF EXISTS `{name}` SYNC")
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(f"{name}:*", count=1000))
        for i in range(0, len(keys), 1000):
            r.delete(*keys[i : i + 1000])
        r.close()
