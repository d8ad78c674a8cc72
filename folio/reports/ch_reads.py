"""ClickHouse reads behind the reports: daily closes of a portfolio and of
symbols (benchmark, FX pairs), and the latest stored valuation.

Instants are passed as epoch ms (exact). ``valuations`` is a
ReplacingMergeTree read with ``FINAL``; ``candles_1d`` is an aggregate
rollup read with ``argMaxMerge`` grouped by bucket (see
``sinks.clickhouse.schema``), so results are exact before background merges.

Day of a valuation: the flow dates a window ending at W by W - 1 ms (the
window [23:59, 24:00) closes its own day, not the next), and this module
does the same. A day's portfolio close is its last ``history`` valuation.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal

from flows.portfolio.money import datetime_ms
from folio.reports.pg_reads import parse_valuation
from schemas.valuation import Valuation
from sinks.clickhouse.client import ClickHouseClient

DAY_MS = 86_400_000
_EPOCH_DAY = date(1970, 1, 1)
_NEEDED_TABLES = ("valuations", "candles_1d")


def has_schema(client: ClickHouseClient) -> bool:
    """Whether the tables the reports read exist (``folio migrate`` creates them)."""
    rows = client.query_rows(
        "SELECT count() FROM system.tables WHERE database = {db:String}"
        " AND name IN {names:Array(String)}",
        parameters={"db": client.database, "names": list(_NEEDED_TABLES)},
    )
    return int(rows[0][0]) == len(_NEEDED_TABLES)


def _day(day_number: int) -> date:
    return _EPOCH_DAY + timedelta(days=int(day_number))


def daily_closes(
    client: ClickHouseClient, portfolio_id: str, as_of: datetime
) -> dict[date, Decimal]:
    """UTC day -> market_value of the day's last history valuation, for
    valuations reflecting nothing after ``as_of`` (window end - 1 ms <= as_of)."""
    rows = client.query_rows(
        "SELECT intDiv(toUnixTimestamp64Milli(window_end) - 1, 86400000) AS day,"
        " argMax(market_value, window_end)"
        f" FROM {client.table('valuations')} FINAL"
        " WHERE portfolio_id = {pid:String} AND window_kind = 'history'"
        " AND window_end <= fromUnixTimestamp64Milli({end:Int64}, 'UTC')"
        " GROUP BY day ORDER BY day",
        parameters={"pid": portfolio_id, "end": datetime_ms(as_of) + 1},
    )
    return {_day(row[0]): row[1] for row in rows}


def latest_valuation(
    client: ClickHouseClient, portfolio_id: str, as_of: datetime
) -> Valuation | None:
    """The newest stored valuation (live or history) reflecting nothing after ``as_of``."""
    rows = client.query_rows(
        f"SELECT payload FROM {client.table('valuations')} FINAL"
        " WHERE portfolio_id = {pid:String}"
        " AND window_end <= fromUnixTimestamp64Milli({end:Int64}, 'UTC')"
        " ORDER BY window_end DESC, version DESC LIMIT 1",
        parameters={"pid": portfolio_id, "end": datetime_ms(as_of) + 1},
    )
    return parse_valuation(rows[0][0]) if rows else None


def symbol_closes(
    client: ClickHouseClient, symbol: str, since: date, as_of: datetime
) -> dict[date, Decimal]:
    """UTC day -> close of ``symbol``'s daily bucket, for days ``since`` ..
    the day of ``as_of``. The as_of day's close is its latest candle stored
    (which, for an as_of in the past, may be later than as_of)."""
    rows = client.query_rows(
        "SELECT intDiv(toUnixTimestamp64Milli(bucket_start), 86400000), argMaxMerge(close)"
        f" FROM {client.table('candles_1d')}"
        " WHERE symbol = {symbol:String}"
        " AND bucket_start >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC')"
        " AND bucket_start <= fromUnixTimestamp64Milli({hi:Int64}, 'UTC')"
        " GROUP BY bucket_start ORDER BY bucket_start",
        parameters={
            "symbol": symbol,
            "lo": (since - _EPOCH_DAY).days * DAY_MS,
            "hi": datetime_ms(as_of),
        },
    )
    return {_day(row[0]): row[1] for row in rows}


def last_closes(
    client: ClickHouseClient, symbols: Iterable[str], as_of: datetime
) -> dict[str, Decimal]:
    """Symbol -> its latest close in daily buckets up to the day of ``as_of``
    (symbols without any are absent)."""
    wanted = sorted(set(symbols))
    if not wanted:
        return {}
    rows = client.query_rows(
        "SELECT symbol, argMaxMerge(close)"
        f" FROM {client.table('candles_1d')}"
        " WHERE symbol IN {symbols:Array(String)}"
        " AND bucket_start <= fromUnixTimestamp64Milli({hi:Int64}, 'UTC')"
        " GROUP BY symbol",
        parameters={"symbols": wanted, "hi": datetime_ms(as_of)},
    )
    return {str(row[0]): row[1] for row in rows}
