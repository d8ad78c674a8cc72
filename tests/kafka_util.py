"""Test helpers for Kafka: produce records, read a whole topic back."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from connectors.kafka.producer import ReliableProducer


def produce(bootstrap: str, topic: str, records: Iterable[tuple[str | None, bytes]]) -> int:
    producer = ReliableProducer({"bootstrap.servers": bootstrap})
    count = producer.produce_many(topic, records)
    producer.flush()
    return count


def read_topic(
    bootstrap: str, topic: str, timeout_s: float = 20.0
) -> list[tuple[int, int, bytes | None, bytes]]:
    """Every record of ``topic`` as (partition, offset, key, value)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "folio-tests",
            "enable.partition.eof": "true",
            "enable.auto.commit": "false",
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        done: set[int] = set()
        out: list[tuple[int, int, bytes | None, bytes]] = []
        import time

        deadline = time.monotonic() + timeout_s
        while len(done) < len(partitions) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.2):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        done.add(int(msg.partition() or 0))
                        continue
                    raise RuntimeError(err.str())
                key, value = msg.key(), msg.value()
                out.append(
                    (
                        int(msg.partition() or 0),
                        int(msg.offset() or 0),
                        key if isinstance(key, bytes) else None,
                        bytes(value or b""),
                    )
                )
        if len(done) < len(partitions):
            raise TimeoutError(f"did not reach the end of {topic}")
        return out
    finally:
        consumer.close()
