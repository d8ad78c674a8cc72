"""How raw input travels into flows: one item per consumed batch of one
Kafka partition (per-item overhead in Bytewax is paid once per batch)."""

from __future__ import annotations

from typing import NamedTuple


class RawRecord(NamedTuple):
    offset: int
    key: bytes | None
    value: bytes | None


class RawBatch(NamedTuple):
    topic: str
    partition: int
    records: list[RawRecord]

    @property
    def shard(self) -> str:
        """Bytewax state key: input partitions are keyed by symbol or
        portfolio, so all state for one key lives in one shard."""
        return f"{self.topic}#{self.partition}"
