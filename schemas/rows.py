"""Compact rows that flows emit and sinks store: tuples with instants in
epoch milliseconds and money as ``Decimal`` (the pydantic models in
``schemas.market`` are the published form of the same data)."""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple


class CandleRow(NamedTuple):
    """A closed 1-minute candle. ``version`` is the same when a replay
    re-emits the same candle, higher for a correction (the flow uses the
    window end: candles are final when emitted, late ticks go to the DLQ)."""

    symbol: str
    window_start_ms: int
    window_end_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int
    currency: str
    version: int
