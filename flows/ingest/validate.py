"""Step 1: bytes -> valid ticks; everything else becomes a rejection with a
reason. Never raises on bad input."""

from __future__ import annotations

from dataclasses import dataclass

from flows.ingest.records import Rejection, SourcedTick
from schemas.common import ContractError
from schemas.envelope import RawBatch
from schemas.fast import TickDecoder

_new_tuple = tuple.__new__


@dataclass(frozen=True)
class ValidationLimits:
    max_message_bytes: int = 64 * 1024
    max_future_ms: int = 60_000

    def decoder(self) -> TickDecoder:
        return TickDecoder(self.max_message_bytes, self.max_future_ms)


def validate_batch(
    batch: RawBatch, now_ms: int, limits: ValidationLimits, decoder: TickDecoder | None = None
) -> tuple[list[SourcedTick], list[Rejection]]:
    """Pass one ``decoder`` per flow: its caches make the next batches cheaper."""
    decode = (decoder or limits.decoder()).decode
    topic, partition = batch.topic, batch.partition
    ticks: list[SourcedTick] = []
    keep = ticks.append
    rejected: list[Rejection] = []
    for offset, key, value in batch.records:
        if value is None:
            rejected.append(
                Rejection(
                    "empty_payload",
                    "message has no value (tombstone)",
                    "decode",
                    topic,
                    partition,
                    offset,
                    key,
                    None,
                )
            )
            continue
        try:
            tick = decode(value, now_ms)
        except ContractError as exc:
            stage = "decode" if exc.reason in ("oversize", "malformed_json") else "validate"
            rejected.append(
                Rejection(exc.reason, exc.detail, stage, topic, partition, offset, key, value)
            )
            continue
        # tuple.__new__ skips the NamedTuple's Python-level __new__ (half the cost).
        keep(_new_tuple(SourcedTick, (tick, topic, partition, offset, value)))
    return ticks, rejected
