"""Test helpers for Kafka: produce records, read a whole topic back
(``connectors.kafka.reader``, shared with the benchmarks)."""

from __future__ import annotations

from collections.abc import Iterable

from benchmarks.chaos_harness import publish
from connectors.kafka.reader import read_topic as read_whole_topic


def produce(bootstrap: str, topic: str, records: Iterable[tuple[str | None, bytes]]) -> int:
    return publish(bootstrap, topic, records)


def read_topic(
    bootstrap: str, topic: str, timeout_s: float = 20.0
) -> list[tuple[int, int, bytes | None, bytes]]:
    """Every record of ``topic`` as (partition, offset, key, value), a
    missing value (tombstone) as ``b""``."""
    records = read_whole_topic({"bootstrap.servers": bootstrap}, topic, timeout_s)
    return [(r.partition, r.offset, r.key, r.value or b"") for r in records]
