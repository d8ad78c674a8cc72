"""Kafka output topics.

Delivery guarantee: at-least-once per message; each batch is flushed and
every delivery acknowledged before the batch counts as written (a failure
raises and the flow restarts from its snapshot). Keys are deterministic
(symbol, portfolio, ``topic/partition/offset`` for dead letters) and every
message carries its version, so consumers de-duplicate replays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.kafka.errors import KafkaDeliveryError, KafkaUnavailable
from connectors.kafka.producer import ReliableProducer
from sinks import metrics
from sinks.errors import SinkError, SinkUnavailable
from sinks.retry import RetryPolicy, with_retry

KeyedBytes = tuple[str, bytes]


@dataclass(frozen=True)
class KafkaTopicSink(DynamicSink[list[KeyedBytes]]):
    """Items are lists of ``(key, value)``; one producer per worker."""

    config: dict[str, str]
    topic: str
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TopicPartition:
        return _TopicPartition(self, f"kafka:{self.topic}")


class _TopicPartition(StatelessSinkPartition[list[KeyedBytes]]):
    def __init__(self, spec: KafkaTopicSink, name: str) -> None:
        self._spec = spec
        self._name = name
        self._producer = ReliableProducer(spec.config)

    def write_batch(self, items: list[list[KeyedBytes]]) -> None:
        started = time.perf_counter()
        count = 0
        for rows in items:
            count += self._producer.produce_many(self._spec.topic, rows)
        with_retry(self._name, self._flush, self._spec.retry)
        metrics.ROWS.labels(self._name).inc(count)
        metrics.BATCH_SECONDS.labels(self._name).observe(time.perf_counter() - started)

    def _flush(self) -> None:
        try:
            self._producer.flush()
        except KafkaUnavailable as exc:
            # Still queued in librdkafka, which keeps retrying: wait again.
            raise SinkUnavailable(self._name, str(exc)) from exc
        except KafkaDeliveryError as exc:
            # Dropped after librdkafka's own retries: fail so the flow replays.
            raise SinkError(self._name, str(exc)) from exc

    def close(self) -> None:
        self._producer.close()
