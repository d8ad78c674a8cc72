"""Batched, replay-safe inserts into ClickHouse: the sinks' entry points.

Row types carry money as ``Decimal`` and instants as **epoch milliseconds**
(``int``), the representation flows already use; this module is the boundary
where they become ``DateTime64(3, 'UTC')``. The raw value of that type is the
epoch-ms integer, so the conversion is exact and costs nothing per row.
``TickRow`` is ``schemas.fast.TickRow``: decoded ticks go in unchanged.

Guarantees (see ``batching`` and ``candles``): one insert per batch with a
content-derived ``insert_deduplication_token``; ``SinkUnavailable`` retried
with backoff, ``SinkRejected`` raised at once; ReplacingMergeTree keys make
replays in any batch split converge when read with ``FINAL``; candles keep
the rollup views exact under replays and corrections.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import NamedTuple

from schemas.fast import TickRow
from sinks.clickhouse.batching import RetryPolicy, insert_all
from sinks.clickhouse.candles import CandleRow, CandleWriteResult, insert_candles
from sinks.clickhouse.client import ClickHouseClient

DEFAULT_BATCH = 10_000


class ValuationRow(NamedTuple):
    portfolio_id: str
    user_id: str
    window_start_ms: int
    window_end_ms: int
    market_value: Decimal
    cash: Decimal
    cost_basis: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    day_change: Decimal | None
    base_currency: str
    payload: str  # JSON document
    version: int
    window_kind: str  # "live" | "history"


class AlertRow(NamedTuple):
    alert_id: str
    rule_id: str
    user_id: str
    portfolio_id: str | None
    symbol: str | None
    kind: str
    observed: Decimal | None
    threshold: Decimal | None
    message: str
    triggered_at_ms: int
    payload: str  # JSON document


TICK_COLUMNS = ("symbol", "price", "ts", "provider", "volume", "currency", "tick_id")
VALUATION_COLUMNS = tuple(name.removesuffix("_ms") for name in ValuationRow._fields)
ALERT_COLUMNS = tuple(name.removesuffix("_ms") for name in AlertRow._fields)


def insert_ticks(
    client: ClickHouseClient,
    rows: Iterable[TickRow],
    *,
    batch_size: int = DEFAULT_BATCH,
    retry: RetryPolicy = RetryPolicy(),
) -> int:
    """Store ticks; returns rows sent. One row per (symbol, ts, provider) with ``FINAL``."""
    return insert_all(client, "ticks", rows, TICK_COLUMNS, batch_size, retry)


def insert_valuations(
    client: ClickHouseClient,
    rows: Iterable[ValuationRow],
    *,
    batch_size: int = DEFAULT_BATCH,
    retry: RetryPolicy = RetryPolicy(),
) -> int:
    """Store valuations; returns rows sent. The highest ``version`` per
    (portfolio_id, window_kind, window_end) wins with ``FINAL``."""
    return insert_all(client, "valuations", rows, VALUATION_COLUMNS, batch_size, retry)


def insert_alerts(
    client: ClickHouseClient,
    rows: Iterable[AlertRow],
    *,
    batch_size: int = DEFAULT_BATCH,
    retry: RetryPolicy = RetryPolicy(),
) -> int:
    """Store fired alerts; returns rows sent. One row per ``alert_id`` with ``FINAL``."""
    return insert_all(client, "alerts", rows, ALERT_COLUMNS, batch_size, retry)


__all__ = [
    "AlertRow",
    "CandleRow",
    "CandleWriteResult",
    "RetryPolicy",
    "TickRow",
    "ValuationRow",
    "insert_alerts",
    "insert_candles",
    "insert_ticks",
    "insert_valuations",
]
