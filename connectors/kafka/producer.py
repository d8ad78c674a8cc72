"""A reliable producer: idempotent, never crashes on a full local queue,
and surfaces every delivery failure.

Bytewax's own ``KafkaSink`` calls ``produce`` without handling
``BufferError`` and dies when librdkafka's queue fills (bytewax issue #522).
Here a full queue means "serve delivery callbacks, then retry", and
``flush()`` at the end of each batch raises if any message failed, so a
batch is acknowledged only when the broker has it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaError, Message, Producer

from connectors.kafka.errors import KafkaDeliveryError, KafkaUnavailable

log = logging.getLogger(__name__)

DEFAULT_PRODUCER_CONFIG = {
    "enable.idempotence": "true",  # implies acks=all and ordered, de-duplicated retries
    "linger.ms": "5",
    "compression.type": "lz4",
    "queue.buffering.max.messages": "200000",
    "batch.num.messages": "10000",
}


class ReliableProducer:
    """Owns one confluent-kafka ``Producer``. Not thread-safe per batch: one
    instance per sink partition or feed thread."""

    def __init__(self, config: dict[str, str], flush_timeout_s: float = 30.0) -> None:
        self._producer = Producer({**DEFAULT_PRODUCER_CONFIG, **config})
        self._flush_timeout_s = flush_timeout_s
        self._failures: list[str] = []

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failures.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")

    def produce(self, topic: str, key: bytes | str | None, value: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
                return
            except BufferError:
                # Queue full: serve callbacks to make room; never drop, never crash.
                self._producer.poll(0.05)

    def produce_many(self, topic: str, records: Iterable[tuple[bytes | str | None, bytes]]) -> int:
        count = 0
        for key, value in records:
            self.produce(topic, key, value)
            count += 1
        self._producer.poll(0)
        return count

    def flush(self) -> None:
        """Block until every queued message is acknowledged; raise on any failure."""
        remaining = self._producer.flush(self._flush_timeout_s)
        if remaining:
            raise KafkaUnavailable(
                f"{remaining} messages not delivered within {self._flush_timeout_s}s"
            )
        if self._failures:
            failures, self._failures = self._failures, []
            raise KafkaDeliveryError(f"{len(failures)} messages failed, first: {failures[0]}")

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer = None  # type: ignore[assignment]
