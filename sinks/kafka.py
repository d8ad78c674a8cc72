"""Kafka output topics.

Delivery guarantee: at-least-once per message; each batch is flushed and
every delivery acknowledged before the batch counts as written (a failure
raises and the flow restarts from its snapshot). Keys are deterministic
(symbol, portfolio, ``topic/partition/offset`` for dead letters) and every
message carries its version, so consumers de-duplicate replays.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from connectors.kafka.producer import DEFAULT_PRODUCER_CONFIG
from sinks import metrics
from sinks.errors import SinkError, SinkRejected, SinkUnavailable
from sinks.retry import RetryPolicy, with_retry

KeyedBytes = tuple[str, bytes]


@dataclass(frozen=True)
class KafkaTopicSink(DynamicSink[list[KeyedBytes]]):
    """Items are lists of ``(key, value)``; one producer per worker."""

    config: dict[str, str]
    topic: str
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    flush_timeout_s: float = 30.0

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TopicPartition:
        return _TopicPartition(self, f"kafka:{self.topic}")


class BatchProducer:
    """An idempotent producer for whole batches (``ReliableProducer``'s
    guarantees at a third of its cost per message).

    librdkafka reports only failed deliveries, to one callback set in the
    configuration: a Python callback per acknowledged message, and the
    keyword argument registering it on every ``produce``, cost more than
    producing. A full local queue means "serve callbacks, then retry",
    never a dropped message; ``flush`` raises if anything failed.
    """

    def __init__(self, name: str, config: dict[str, str], flush_timeout_s: float) -> None:
        self._name = name
        self._flush_timeout_s = flush_timeout_s
        self._failures: list[str] = []
        settings: dict[str, Any] = {**DEFAULT_PRODUCER_CONFIG, **config}
        settings["delivery.report.only.error"] = True
        # A callback that holds no reference back to self: no cycle, so the
        # producer (and its threads) goes as soon as the sink drops it.
        settings["on_delivery"] = partial(_record_failure, self._failures)
        self._producer: Producer | None = Producer(settings)

    def produce_all(self, topic: str, records: Iterable[tuple[str | bytes | None, bytes]]) -> int:
        producer = self._live()
        produce = producer.produce
        count = 0
        for key, value in records:
            try:
                produce(topic, value, key)
            except BufferError:
                self._produce_when_room(topic, key, value)
            except KafkaException as exc:  # refused locally, e.g. a message too large
                raise SinkRejected(self._name, str(exc)) from exc
            count += 1
        producer.poll(0)
        return count

    def _produce_when_room(self, topic: str, key: str | bytes | None, value: bytes) -> None:
        producer = self._live()
        while True:
            producer.poll(0.05)  # queue full: serve callbacks to make room
            try:
                producer.produce(topic, value, key)
                return
            except BufferError:
                continue

    def flush(self) -> None:
        """Block until every queued message is acknowledged. Raises
        ``SinkUnavailable`` if some are still queued (librdkafka keeps
        retrying them: flush again) and ``SinkError`` if any failed."""
        remaining = self._live().flush(self._flush_timeout_s)
        if remaining:
            raise SinkUnavailable(
                self._name, f"{remaining} messages not delivered within {self._flush_timeout_s}s"
            )
        if self._failures:
            failures, self._failures = self._failures, []
            # Dropped after librdkafka's own retries: fail so the flow replays.
            raise SinkError(self._name, f"{len(failures)} messages failed, first: {failures[0]}")

    def close(self) -> None:
        """Flush (raising like ``flush``), then release the producer."""
        try:
            self.flush()
        finally:
            self._producer = None

    def _live(self) -> Producer:
        if self._producer is None:
            raise SinkError(self._name, "producer is closed")
        return self._producer


def _record_failure(failures: list[str], err: KafkaError | None, msg: Message) -> None:
    if err is not None:
        failures.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")


class _TopicPartition(StatelessSinkPartition[list[KeyedBytes]]):
    def __init__(self, spec: KafkaTopicSink, name: str) -> None:
        self._spec = spec
        self._name = name
        self._producer = BatchProducer(name, spec.config, spec.flush_timeout_s)

    def write_batch(self, items: list[list[KeyedBytes]]) -> None:
        started = time.perf_counter()
        count = 0
        for rows in items:
            count += self._producer.produce_all(self._spec.topic, rows)
        with_retry(self._name, self._producer.flush, self._spec.retry)
        metrics.ROWS.labels(self._name).inc(count)
        metrics.BATCH_SECONDS.labels(self._name).observe(time.perf_counter() - started)

    def close(self) -> None:
        self._producer.close()
