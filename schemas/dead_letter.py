"""``pipeline.dlq`` (key: source topic/partition/offset): rejected input with
everything needed to find, fix and replay it."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from schemas.common import SCHEMA_VERSION, UtcDatetime


class Stage(StrEnum):
    """The step that rejected a message."""

    DECODE = "decode"  # bytes -> JSON
    VALIDATE = "validate"  # JSON -> contract
    DEDUPLICATE = "deduplicate"
    CANDLES = "candles"  # event-time windowing (late ticks)
    LEDGER = "ledger"  # impossible transactions (e.g. selling more than held)
    RULES = "rules"


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True)

    reason: str
    detail: str
    stage: Stage
    source_topic: str
    partition: int
    offset: int
    key: str | None = None
    raw: str
    raw_truncated: bool = False
    rejected_at: UtcDatetime
    schema_version: int = SCHEMA_VERSION

    @property
    def dlq_key(self) -> str:
        """Deterministic, so a replayed rejection can be recognised."""
        return f"{self.source_topic}/{self.partition}/{self.offset}"
