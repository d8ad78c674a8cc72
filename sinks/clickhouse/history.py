"""Price history for charts: OHLCV over a named range at a fitting granularity.

=======  ===============================  ======================
range    span back from ``end``            bars from
=======  ===============================  ======================
1d, 7d   1 / 7 days                        candles_1m / candles_1h
1m..1y   1, 3, 6, 12 calendar months       candles_1d
3y, 5y   36, 60 months                     candles_1w (Mondays)
10y,all  120 months / everything           candles_1mo
=======  ===============================  ======================

Rollups are read with their ``-Merge`` combinators grouped by bucket, and
``candles_1m`` with ``FINAL``, so results are exact before background
merges. The first bucket is the one containing the range start (a partial
week or month is shown whole). Backfilled daily bars appear from the day
level up; see ``backfill.backfill_daily_bars``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from schemas.common import normalize_symbol
from sinks.clickhouse.backfill import BackfillResult, BadRowsError, backfill_daily_bars
from sinks.clickhouse.client import ClickHouseClient
from sinks.clickhouse.ranges import RANGES
from sinks.clickhouse.rollups import BUCKETS

GRANULARITY = {
    "candles_1m": "1m",
    "candles_1h": "1h",
    "candles_1d": "1d",
    "candles_1w": "1w",
    "candles_1mo": "1mo",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Bar(NamedTuple):
    start: datetime  # UTC, start of the candle or bucket
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int
    currency: str


@dataclass(frozen=True)
class History:
    symbol: str
    range_name: str
    granularity: str  # "1m" | "1h" | "1d" | "1w" | "1mo"
    start: datetime | None  # None for "all"
    end: datetime
    bars: list[Bar]


def months_before(moment: datetime, months: int) -> datetime:
    """Same day and time ``months`` calendar months earlier (day clamped to the month)."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    next_month = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=moment.tzinfo)
    last_day = (next_month - timedelta(days=1)).day
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


def range_start(range_name: str, end: datetime) -> datetime | None:
    days, months, _table = _range(range_name)
    if days:
        return end - timedelta(days=days)
    if months:
        return months_before(end, months)
    return None


def history(
    client: ClickHouseClient, symbol: str, range_name: str, *, end: datetime | None = None
) -> History:
    """Bars of ``symbol`` for ``range_name`` ending at ``end`` (default: now), oldest first.

    Raises ``ValueError`` for an unknown range, a naive ``end`` or a bad symbol.
    """
    _days, _months, table = _range(range_name)
    symbol = normalize_symbol(symbol)
    if end is None:
        end = datetime.now(UTC)
    elif end.tzinfo is None or end.utcoffset() is None:
        raise ValueError(f"end must be timezone-aware, got {end!r}")
    end = end.astimezone(UTC)
    start = range_start(range_name, end)
    params = {"symbol": symbol, "start": start or _EPOCH, "end": end}
    if table == "candles_1m":
        sql = (
            "SELECT window_start, open, high, low, close, volume, toUInt64(trades), currency"
            f" FROM {client.table(table)} FINAL"
            " WHERE symbol = {symbol:String}"
            " AND window_start >= {start:DateTime64(3, 'UTC')}"
            " AND window_start < {end:DateTime64(3, 'UTC')}"
            " ORDER BY window_start"
        )
    else:
        first_bucket = BUCKETS[table].format(t="{start:DateTime64(3, 'UTC')}")
        sql = (
            "SELECT bucket_start, argMinMerge(open), max(high), min(low), argMaxMerge(close),"
            " sum(volume), sum(trades), anyLast(currency)"
            f" FROM {client.table(table)}"
            " WHERE symbol = {symbol:String}"
            f" AND bucket_start >= {first_bucket}"
            " AND bucket_start < {end:DateTime64(3, 'UTC')}"
            " GROUP BY bucket_start ORDER BY bucket_start"
        )
    rows = client.query_rows(sql, parameters=params)
    bars = [Bar(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]), str(r[7])) for r in rows]
    return History(symbol, range_name, GRANULARITY[table], start, end, bars)


def _range(range_name: str) -> tuple[int, int, str]:
    try:
        return RANGES[range_name]
    except KeyError:
        raise ValueError(
            f"unknown range {range_name!r}; expected one of {', '.join(RANGES)}"
        ) from None


__all__ = [
    "RANGES",
    "BackfillResult",
    "BadRowsError",
    "Bar",
    "History",
    "backfill_daily_bars",
    "history",
]
