"""Shared fixtures: real services, isolated per test.

- Kafka: one Tansu broker per test session on a free port (started and
  stopped by PID); each test gets its own topic names.
- Postgres: a fresh database per test with the project's migrations.
- Redis: a random key prefix per test, deleted afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql
from pydantic import SecretStr

from connectors.kafka.admin import ensure_topics
from deploy.processes import free_port, stop
from deploy.tansu import start_tansu
from folio.settings import Settings, TopicNames
from folio.wiring import topic_partitions
from sinks.clickhouse.client import ClickHouseClient, open_clickhouse
from sinks.clickhouse.schema import apply_schema
from sinks.postgres.migrate import apply_migrations

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    pid = start_tansu(port, log)
    yield f"127.0.0.1:{port}"
    stop(pid, "tansu")


@pytest.fixture
def unique() -> str:
    return secrets.token_hex(4)


@pytest.fixture
def pg_dsn(unique: str) -> Iterator[str]:
    name = f"folio_t_{unique}"
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    apply_migrations(dsn)
    yield dsn
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def redis_prefix(unique: str) -> Iterator[str]:
    prefix = f"folio_t_{unique}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def topic_names(suffix: str) -> TopicNames:
    base = TopicNames()
    return TopicNames(**{k: f"{v}.{suffix}" for k, v in base.all().items()})


@pytest.fixture
def settings(
    tmp_path: Path, kafka_bootstrap: str, pg_dsn: str, redis_prefix: str, unique: str
) -> Settings:
    """Settings for one test: its own topics, database, key prefix, chDB dir."""
    test_settings = Settings(
        home=tmp_path / "home",
        kafka_bootstrap=kafka_bootstrap,
        topics=topic_names(unique),
        redis_url=SecretStr(REDIS_URL),
        redis_prefix=redis_prefix,
        postgres_dsn=SecretStr(pg_dsn),
        clickhouse_dsn=SecretStr(f"chdb://{tmp_path / 'clickhouse'}"),  # tests use the engine
        clickhouse_database=f"folio_t_{unique}",
        metrics_port=0,
        topic_partitions=2,
    )
    ensure_topics(test_settings.kafka_client_config(), topic_partitions(test_settings))
    return test_settings


@pytest.fixture(scope="session")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one chDB directory of this test process (chDB runs one per process)."""
    return tmp_path_factory.mktemp("chdb") / "data"


@pytest.fixture(scope="session")
def engine(engine_dir: Path) -> Iterator[ClickHouseClient]:
    client = open_clickhouse(f"chdb://{engine_dir}", "default")
    yield client
    client.close()


@pytest.fixture
def clickhouse(engine: ClickHouseClient, settings: Settings) -> Iterator[ClickHouseClient]:
    """The test's own ClickHouse database (named in ``settings``), with the schema."""
    client = engine.for_database(settings.clickhouse_database)
    apply_schema(client)
    yield client
    engine.command(f"DROP DATABASE IF EXISTS `{client.database}` SYNC")
