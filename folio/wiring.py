"""Turn ``Settings`` into running pieces: sources, sinks, flows.

The only place where configuration meets the classes in connectors/, flows/
and sinks/ (which take explicit arguments and never read the environment).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir

from connectors.kafka.source import KafkaBatchSource
from flows.ingest.flow import IngestConfig, IngestSinks, build_ingest_flow
from flows.ingest.validate import ValidationLimits
from folio.settings import Settings
from schemas.topics import TOPICS
from sinks.kafka import KafkaTopicSink
from sinks.redis.prices import RedisPriceSink


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
        dead_letters=KafkaTopicSink(kafka, topics.dlq),
        tick_store=tick_store,
        price_cache=RedisPriceSink(settings.redis_url.get_secret_value(), settings.redis_prefix),
        price_topic=KafkaTopicSink(kafka, topics.prices),
        candle_topic=KafkaTopicSink(kafka, topics.candles),
        candle_store=candle_store,
    )


def pipeline_flow(
    settings: Settings,
    exit_at_end: bool,
    clickhouse: Any | None,
    stop: threading.Event | None = None,
) -> Dataflow:
    source = KafkaBatchSource(
        settings.kafka_client_config(),
        (settings.topics.ticks,),
        batch_size=settings.batch_size,
        tail=not exit_at_end,
        stop=stop,
    )
    return build_ingest_flow(
        source, ingest_sinks(settings, clickhouse), ingest_config(settings, exit_at_end)
    )


def recovery_config(directory: Path | None, partitions: int) -> RecoveryConfig | None:
    """Bytewax recovery; partitions are created on first use."""
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    if not any(directory.glob("part-*.sqlite3")):
        init_db_dir(directory, partitions)
    return RecoveryConfig(directory)
