"""Turn ``Settings`` into running pieces: sources, sinks, flows.

The only place where configuration meets the classes in connectors/, flows/
and sinks/ (which take explicit arguments and never read the environment).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir

from connectors.kafka.admin import describe_topics
from connectors.kafka.errors import KafkaConnectorError
from connectors.kafka.source import KafkaBatchSource
from flows.dashboard.compute import CardSettings
from flows.dashboard.flow import DashboardConfig, DashboardSinks
from flows.ingest.flow import IngestConfig, IngestSinks
from flows.ingest.validate import ValidationLimits
from flows.pipeline import (
    AlertSinks,
    PipelineConfig,
    PipelineSinks,
    PipelineSources,
    build_flow,
)
from flows.valuation.flow import ValuationConfig, ValuationSinks
from folio.errors import UsageProblem
from folio.settings import Settings
from schemas.topics import TOPICS
from sinks.kafka import KafkaTopicSink
from sinks.kafka_epoch import KafkaEpochSink
from sinks.postgres.alerts import alerts_sink
from sinks.postgres.dashboards import dashboards_sink
from sinks.postgres.ledger import ledger_sink
from sinks.postgres.valuations import latest_valuation_sink
from sinks.redis.alerts import RedisAlertSink
from sinks.redis.dashboard import RedisDashboardSink
from sinks.redis.documents import valuation_cache_sink
from sinks.redis.prices import redis_price_store


def topic_partitions(settings: Settings) -> dict[str, int]:
    names = settings.topics.all()
    return {
        names[logical]: settings.topic_partitions or spec.partitions
        for logical, spec in TOPICS.items()
    }


def ingest_config(settings: Settings, exit_at_end: bool) -> IngestConfig:
    return IngestConfig(
        limits=ValidationLimits(settings.max_message_bytes, settings.max_future_ms),
        dedup_horizon_ms=settings.dedup_horizon_ms,
        provider_priority=tuple(settings.provider_priority),
        provider_stale_ms=settings.provider_stale_ms,
        candle_ms=settings.candle_ms,
        allowed_lateness_ms=settings.allowed_lateness_ms,
        flush_candles_at_eof=exit_at_end,
    )


def ingest_sinks(settings: Settings, clickhouse: Any | None) -> IngestSinks:
    kafka = settings.kafka_client_config()
    topics = settings.topics
    tick_store = candle_store = None
    if clickhouse is not None:
        from sinks.clickhouse.stream import ClickHouseCandleSink, ClickHouseTickSink

        tick_store = ClickHouseTickSink(clickhouse)
        candle_store = ClickHouseCandleSink(clickhouse)
    return IngestSinks(
        tick_store=tick_store,
        price_cache=redis_price_store(settings.redis_url.get_secret_value(), settings.redis_prefix),
        price_topic=KafkaEpochSink(kafka, topics.prices),
        candle_topic=KafkaEpochSink(kafka, topics.candles),
        candle_store=candle_store,
    )


def valuation_sinks(settings: Settings, clickhouse: Any | None) -> ValuationSinks:
    dsn = settings.postgres_dsn.get_secret_value()
    history_store = None
    if clickhouse is not None:
        from sinks.clickhouse.stream import ClickHouseValuationSink

        history_store = ClickHouseValuationSink(clickhouse, "history")
    return ValuationSinks(
        valuation_topic=KafkaTopicSink(settings.kafka_client_config(), settings.topics.valuations),
        valuation_cache=valuation_cache_sink(
            settings.redis_url.get_secret_value(), settings.redis_prefix
        ),
        latest_store=latest_valuation_sink(dsn),
        history_store=history_store,
        ledger_store=ledger_sink(dsn),
    )


def alert_sinks(settings: Settings, clickhouse: Any | None) -> AlertSinks:
    history = None
    if clickhouse is not None:
        from sinks.clickhouse.stream import ClickHouseAlertSink

        history = ClickHouseAlertSink(clickhouse)
    return AlertSinks(
        alert_topic=KafkaTopicSink(settings.kafka_client_config(), settings.topics.alerts),
        alert_store=alerts_sink(settings.postgres_dsn.get_secret_value()),
        alert_channel=RedisAlertSink(settings.redis_url.get_secret_value(), settings.redis_prefix),
        alert_history=history,
    )


def dashboard_sinks(settings: Settings) -> DashboardSinks:
    return DashboardSinks(
        cache=RedisDashboardSink(settings.redis_url.get_secret_value(), settings.redis_prefix),
        store=dashboards_sink(settings.postgres_dsn.get_secret_value()),
    )


def pipeline_config(settings: Settings, exit_at_end: bool) -> PipelineConfig:
    partitions = describe_topics(settings.kafka_client_config())

    def shards(topic: str) -> tuple[str, ...]:
        if topic not in partitions:
            raise KafkaConnectorError(f"topic {topic} does not exist (run `folio migrate`)")
        return tuple(f"{topic}#{i}" for i in range(partitions[topic]))

    return PipelineConfig(
        ingest=ingest_config(settings, exit_at_end),
        valuation=ValuationConfig(
            portfolio_shards=shards(settings.topics.transactions),
            live_window_ms=settings.window_live_ms,
            history_window_ms=settings.window_history_ms,
            allowed_lateness_ms=settings.valuation_lateness_ms,
            max_message_bytes=settings.max_message_bytes,
            drain_at_eof=exit_at_end,
            wait_for_transactions=True,  # KafkaBatchSource emits end markers
            price_shards=shards(settings.topics.ticks),
        ),
        price_shards=shards(settings.topics.ticks),
        rule_partitions=len(shards(settings.topics.rules)),  # KafkaBatchSource: end markers
        dashboard=DashboardConfig(
            flush_ms=settings.window_live_ms,
            drain_at_eof=exit_at_end,
            cards=CardSettings(benchmark=settings.benchmark),
        ),
    )


def pipeline_flow(
    settings: Settings,
    exit_at_end: bool,
    clickhouse: Any | None,
    stop: threading.Event | None = None,
) -> Dataflow:
    kafka = settings.kafka_client_config()

    def source(topic: str) -> KafkaBatchSource:
        return KafkaBatchSource(
            kafka, (topic,), batch_size=settings.batch_size, tail=not exit_at_end, stop=stop
        )

    topics = settings.topics
    sources = PipelineSources(
        source(topics.ticks), source(topics.transactions), source(topics.rules)
    )
    sinks = PipelineSinks(
        ingest=ingest_sinks(settings, clickhouse),
        valuation=valuation_sinks(settings, clickhouse),
        alerts=alert_sinks(settings, clickhouse),
        dead_letters=KafkaTopicSink(kafka, topics.dlq),
        dashboard=dashboard_sinks(settings),
    )
    return build_flow(sources, sinks, pipeline_config(settings, exit_at_end))


def recovery_config(
    directory: Path | None, partitions: int, create: bool = True
) -> RecoveryConfig | None:
    """Bytewax recovery. With ``create``, an empty directory gets
    ``partitions`` partitions (one process owns them all). Without it (a
    process of a cluster) the directory must already hold this process's
    share: a full set created in each process's empty directory would give
    the cluster several copies of every partition."""
    if directory is None:
        return None
    if not (directory.is_dir() and any(directory.glob("part-*.sqlite3"))):
        if not create:
            raise UsageProblem(
                f"recovery directory {directory} holds no partitions: in a cluster create "
                "them once (python -m bytewax.recovery DIR N) and give each process its share"
            )
        _init_recovery_dir(directory, partitions)
    return RecoveryConfig(directory)


def _init_recovery_dir(directory: Path, partitions: int) -> None:
    """Create the partitions in a staging directory, then rename it into
    place: a process killed while creating them (the chaos test kills at
    random points) must not leave a directory that looks initialised but
    holds half-written partitions, which Bytewax then refuses."""
    staging = directory.with_name(f".{directory.name}.initializing")
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted start
    staging.mkdir(parents=True)
    init_db_dir(staging, partitions)
    if directory.is_dir():
        try:
            directory.rmdir()  # empty apart from the partitions it lacks
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            raise UsageProblem(
                f"recovery directory {directory} holds files but no partitions: "
                "give an empty or new directory"
            ) from None
    staging.rename(directory)
