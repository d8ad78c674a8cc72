"""Rows -> output messages of the data contract (JSON bytes, Kafka keys).

Built by hand with orjson for speed; tests validate every shape against the
pydantic models in ``schemas``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from flows.ingest.records import CandleRow, PriceRow, Rejection, SourcedTick
from schemas.common import SCHEMA_VERSION, ms_to_datetime

MAX_RAW_IN_DLQ = 256 * 1024

KeyedBytes = tuple[str, bytes]


def iso(ms: int) -> str:
    return ms_to_datetime(ms).isoformat(timespec="milliseconds")


def dec(value: Decimal) -> str:
    """Fixed-point text, as in the contract ("0.0000001", never "1E-7")."""
    return format(value, "f")


def _dumps(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, default=dec)


def price_row(item: SourcedTick) -> PriceRow:
    t = item.tick
    return PriceRow(t.symbol, t.price, t.ts_ms, t.provider, t.currency, t.volume)


def price_doc(row: PriceRow) -> dict[str, Any]:
    return {
        "symbol": row.symbol,
        "price": dec(row.price),
        "ts": iso(row.ts_ms),
        "provider": row.provider,
        "currency": row.currency,
        "volume": None if row.volume is None else dec(row.volume),
        "version": row.ts_ms,
        "schema_version": SCHEMA_VERSION,
    }


def price_message(row: PriceRow) -> KeyedBytes:
    return row.symbol, _dumps(price_doc(row))


def candle_message(row: CandleRow) -> KeyedBytes:
    return row.symbol, _dumps(
        {
            "symbol": row.symbol,
            "window_start": iso(row.window_start_ms),
            "window_end": iso(row.window_end_ms),
            "open": dec(row.open),
            "high": dec(row.high),
            "low": dec(row.low),
            "close": dec(row.close),
            "volume": dec(row.volume),
            "trades": row.trades,
            "currency": row.currency,
            "schema_version": SCHEMA_VERSION,
        }
    )


def late_rejection(item: SourcedTick, closed_until_ms: int) -> Rejection:
    return Rejection(
        "late",
        f"ts {iso(item.tick.ts_ms)} is behind closed windows (until {iso(closed_until_ms)})",
        "candles",
        item.topic,
        item.partition,
        item.offset,
        item.tick.symbol.encode(),
        item.raw,
    )


def dead_letter_message(rej: Rejection, rejected_at_ms: int) -> KeyedBytes:
    raw = rej.raw or b""
    truncated = len(raw) > MAX_RAW_IN_DLQ
    key = f"{rej.topic}/{rej.partition}/{rej.offset}"
    return key, _dumps(
        {
            "reason": rej.reason,
            "detail": rej.detail,
            "stage": rej.stage,
            "source_topic": rej.topic,
            "partition": rej.partition,
            "offset": rej.offset,
            "key": None if rej.key is None else rej.key.decode("utf-8", "backslashreplace"),
            "raw": raw[:MAX_RAW_IN_DLQ].decode("utf-8", "backslashreplace"),
            "raw_truncated": truncated,
            "rejected_at": iso(rejected_at_ms),
            "schema_version": SCHEMA_VERSION,
        }
    )
