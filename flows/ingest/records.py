"""Compact rows that travel between ingest steps (tuples, epoch ms)."""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from schemas.fast import TickRow
from schemas.rows import CandleRow

__all__ = ["CandleRow", "PriceRow", "Rejection", "SourcedTick"]


class SourcedTick(NamedTuple):
    """A valid tick and where it came from (for dead letters further down)."""

    tick: TickRow
    topic: str
    partition: int
    offset: int
    raw: bytes


class Rejection(NamedTuple):
    reason: str
    detail: str
    stage: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    raw: bytes | None


class PriceRow(NamedTuple):
    """A consolidated price; ``version`` is the event time in ms."""

    symbol: str
    price: Decimal
    ts_ms: int
    provider: str
    currency: str
    volume: Decimal | None
