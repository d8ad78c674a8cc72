"""Read a whole topic, from the beginning of each partition to its end.

"The end" is decided by two signals, because neither alone is safe on every
Kafka-compatible broker:

- the *high watermark captured when reading starts* (``ListOffsets``): on
  Tansu 0.6 it is the base offset of the partition's last record batch + 1,
  so it can fall short of the real end by up to a batch; it is only a floor;
- the consumer's *end-of-partition event* (``PARTITION_EOF``), which
  librdkafka raises when a fetch finds nothing past the fetch response's
  high watermark: exact once the writers are done, but a lone event could
  come early while records are still arriving.

A partition is done at the first end-of-partition event at or past its
captured watermark; every record before that is returned, whatever its
offset (records produced while reading may be included too). Used by tests
and benchmarks to read back what a run wrote.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from connectors.kafka.errors import KafkaConnectorError, KafkaUnavailable

_READER_CONFIG = {
    "group.id": "folio-reader",  # required by librdkafka; assign() joins no group
    "enable.auto.commit": "false",
    "enable.partition.eof": "true",
}


class TopicRecord(NamedTuple):
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class TopicEndTimeout(KafkaConnectorError, TimeoutError):
    """A partition did not reach its end within the reader's time limit."""


def read_topic(config: dict[str, str], topic: str, timeout_s: float = 30.0) -> list[TopicRecord]:
    """Every record of ``topic``, in partition then offset order."""
    consumer = Consumer({**config, **_READER_CONFIG})
    try:
        floors = _start_watermarks(consumer, topic, timeout_s)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in floors])
        records = _read_until_ends(consumer, topic, floors, time.monotonic() + timeout_s)
    finally:
        consumer.close()
    records.sort(key=lambda r: (r.partition, r.offset))
    return records


def _start_watermarks(consumer: Consumer, topic: str, timeout_s: float) -> dict[int, int]:
    """Partition -> high watermark now (a floor for the end, see above)."""
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        if metadata.error is not None:
            raise KafkaConnectorError(f"reading {topic}: {metadata.error.str()}")
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1]
            for p in sorted(metadata.partitions)
        }
    except KafkaException as exc:
        raise KafkaUnavailable(f"reading {topic}: {exc}") from exc


def _read_until_ends(
    consumer: Consumer, topic: str, floors: dict[int, int], deadline: float
) -> list[TopicRecord]:
    pending = set(floors)
    out: list[TopicRecord] = []
    while pending:
        if time.monotonic() > deadline:
            where = ", ".join(f"{topic}[{p}] (end >= {floors[p]})" for p in sorted(pending))
            raise TopicEndTimeout(f"did not reach the end of {where}")
        for msg in consumer.consume(5_000, 0.2):
            partition = int(msg.partition() or 0)
            err = msg.error()
            if err is None:
                key = msg.key()
                out.append(
                    TopicRecord(
                        partition,
                        int(msg.offset() or 0),
                        key if isinstance(key, bytes) else None,
                        msg.value(),
                    )
                )
            elif err.code() != KafkaError._PARTITION_EOF:
                raise KafkaConnectorError(f"reading {topic}[{partition}]: {err.str()}")
            elif int(msg.offset() or 0) >= floors[partition]:
                pending.discard(partition)
    return out
