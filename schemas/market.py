"""Market data messages: raw ticks in, consolidated prices and candles out."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.common import (
    SCHEMA_VERSION,
    Currency,
    ExactDecimal,
    PositiveDecimal,
    Symbol,
    UtcDatetime,
)

Provider = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.\-]+$")]


class Tick(BaseModel):
    """``market.ticks`` (key: symbol): one quote from one provider."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    symbol: Symbol
    price: PositiveDecimal
    ts: UtcDatetime
    provider: Provider
    volume: ExactDecimal | None = Field(default=None, ge=0)
    currency: Currency = "USD"
    tick_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class ConsolidatedPrice(BaseModel):
    """``market.prices`` (key: symbol): the validated, de-duplicated price
    of the provider currently chosen for the symbol. ``version`` is the
    event time in epoch ms: consumers keep the highest."""

    model_config = ConfigDict(frozen=True)

    symbol: Symbol
    price: PositiveDecimal
    ts: UtcDatetime
    provider: Provider
    currency: Currency = "USD"
    volume: ExactDecimal | None = None
    version: int
    schema_version: int = SCHEMA_VERSION


class Candle(BaseModel):
    """``market.candles.1m`` (key: symbol): OHLCV of consolidated prices over
    [window_start, window_end) by event time, emitted once when it closes."""

    model_config = ConfigDict(frozen=True)

    symbol: Symbol
    window_start: UtcDatetime
    window_end: UtcDatetime
    open: PositiveDecimal
    high: PositiveDecimal
    low: PositiveDecimal
    close: PositiveDecimal
    volume: ExactDecimal
    trades: int = Field(ge=1)
    currency: Currency = "USD"
    schema_version: int = SCHEMA_VERSION


__all__ = ["Candle", "ConsolidatedPrice", "Decimal", "Tick"]
