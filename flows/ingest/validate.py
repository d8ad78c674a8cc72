"""Step 1: bytes -> valid ticks; everything else becomes a rejection with a
reason. Never raises on bad input."""

from __future__ import annotations

from dataclasses import dataclass

from flows.ingest.records import Rejection, SourcedTick
from schemas.common import ContractError
from schemas.envelope import RawBatch
from schemas.fast import decode_json, tick_from_json


@dataclass(frozen=True)
class ValidationLimits:
    max_message_bytes: int = 64 * 1024
    max_future_ms: int = 60_000


def validate_batch(
    batch: RawBatch, now_ms: int, limits: ValidationLimits
) -> tuple[list[SourcedTick], list[Rejection]]:
    ticks: list[SourcedTick] = []
    rejected: list[Rejection] = []
    for offset, key, value in batch.records:
        if value is None:
            rejected.append(
                Rejection(
                    "empty_payload",
                    "message has no value (tombstone)",
                    "decode",
                    batch.topic,
                    batch.partition,
                    offset,
                    key,
                    None,
                )
            )
            continue
        try:
            data = decode_json(value, limits.max_message_bytes)
            tick = tick_from_json(data, now_ms, limits.max_future_ms)
        except ContractError as exc:
            stage = "decode" if exc.reason in ("oversize", "malformed_json") else "validate"
            rejected.append(
                Rejection(
                    exc.reason, exc.detail, stage, batch.topic, batch.partition, offset, key, value
                )
            )
            continue
        ticks.append(SourcedTick(tick, batch.topic, batch.partition, offset, value))
    return ticks, rejected
