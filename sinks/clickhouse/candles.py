"""1-minute candle writes that keep the rollups exact under replays.

The rollup views sum volume and trades over every block inserted into
``candles_1m``; a replayed candle that reached them again would count twice.
So each batch is compared, under the client lock, with what is stored:

- not stored -> inserted (``inserted``);
- stored with the same values -> skipped (``unchanged``): a replay, in any
  batch split, inserts nothing;
- stored with other values and a lower version -> inserted, and the rollup
  buckets holding it are recomputed from the sources (``corrected``);
- stored with other values and the same or a higher version -> skipped
  (``stale``).

The comparison assumes this process is the only writer of a symbol's
candles (true for chDB, which one process owns; with a server, keep one
writer per symbol, as the flow's keying by symbol does).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from schemas.rows import CandleRow
from sinks.clickhouse.batching import NO_RETRY, batched, insert_batch
from sinks.clickhouse.client import SINK, ClickHouseClient
from sinks.clickhouse.rollups import queue_rebuild, rebuild_pending
from sinks.retry import RetryPolicy, with_retry

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
COLUMNS = (
    "symbol", "window_start", "window_end", "open", "high", "low", "close",
    "volume", "trades", "currency", "version", "feeds_daily",
)  # fmt: skip


@dataclass(frozen=True)
class CandleWriteResult:
    inserted: int = 0
    unchanged: int = 0
    stale: int = 0
    corrected: int = 0

    def __add__(self, other: CandleWriteResult) -> CandleWriteResult:
        return CandleWriteResult(
            self.inserted + other.inserted,
            self.unchanged + other.unchanged,
            self.stale + other.stale,
            self.corrected + other.corrected,
        )


def insert_candles(
    client: ClickHouseClient,
    rows: Iterable[CandleRow],
    *,
    batch_size: int = 5_000,
    retry: RetryPolicy = RetryPolicy(),
) -> CandleWriteResult:
    """Store 1-minute candles batch by batch (see the module docstring)."""
    total = CandleWriteResult()
    for chunk in batched(rows, batch_size):
        total += with_retry(SINK, partial(_write_batch, client, chunk), retry)
    return total


def _content(row: Sequence[Any]) -> tuple[Any, ...]:
    """Everything but the key and the version (Decimal compares by value)."""
    return tuple(row[2:10])


def _latest_per_key(rows: Sequence[CandleRow]) -> list[CandleRow]:
    latest: dict[tuple[str, int], CandleRow] = {}
    for row in rows:
        key = (row.symbol, row.window_start_ms)
        if key not in latest or row.version >= latest[key].version:
            latest[key] = row
    return list(latest.values())


def _stored(client: ClickHouseClient, rows: Sequence[CandleRow]) -> dict[tuple[str, int], Any]:
    """Stored candles in the batch's symbols x time span, by key."""
    found = client.query_rows(
        "SELECT symbol, toUnixTimestamp64Milli(window_start), toUnixTimestamp64Milli(window_end),"
        " open, high, low, close, volume, trades, currency, version"
        f" FROM {client.table('candles_1m')} FINAL"
        " WHERE symbol IN {symbols:Array(String)}"
        " AND window_start BETWEEN fromUnixTimestamp64Milli({lo:Int64}, 'UTC')"
        " AND fromUnixTimestamp64Milli({hi:Int64}, 'UTC')",
        parameters=_span(rows),
    )
    return {(row[0], row[1]): row for row in found}


def _days_with_bars(client: ClickHouseClient, rows: Sequence[CandleRow]) -> set[tuple[str, int]]:
    """(symbol, day start ms) already covered by ``daily_bars``."""
    found = client.query_rows(
        "SELECT DISTINCT symbol, toUnixTimestamp(toDateTime(day, 'UTC')) * 1000"
        f" FROM {client.table('daily_bars')}"
        " WHERE symbol IN {symbols:Array(String)}"
        " AND day BETWEEN toDate(fromUnixTimestamp64Milli({lo:Int64}, 'UTC'))"
        " AND toDate(fromUnixTimestamp64Milli({hi:Int64}, 'UTC'))",
        parameters=_span(rows),
    )
    return {(row[0], int(row[1])) for row in found}


def _span(rows: Sequence[CandleRow]) -> dict[str, Any]:
    starts = [row.window_start_ms for row in rows]
    return {"symbols": sorted({row.symbol for row in rows}), "lo": min(starts), "hi": max(starts)}


def _feeds_daily(row: CandleRow, covered: set[tuple[str, int]]) -> int:
    """0 when a daily bar already covers the candle's day (first source wins)."""
    return 0 if (row.symbol, row.window_start_ms - row.window_start_ms % DAY_MS) in covered else 1


def _write_batch(client: ClickHouseClient, batch: Sequence[CandleRow]) -> CandleWriteResult:
    rows = _latest_per_key(batch)
    with client.locked():
        stored = _stored(client, rows)
        covered = _days_with_bars(client, rows)
        fresh: list[CandleRow] = []
        corrections: list[CandleRow] = []
        unchanged = stale = 0
        for row in rows:
            old = stored.get((row.symbol, row.window_start_ms))
            if old is None:
                fresh.append(row)
            elif _content(old) == _content(row):
                unchanged += 1
            elif row.version > old[10]:
                corrections.append(row)
            else:
                stale += 1
        if corrections:
            rebuild_pending(client)  # earlier, interrupted corrections first
            queue_rebuild(client, [(row.symbol, row.window_start_ms) for row in corrections])
        values = [(*row, _feeds_daily(row, covered)) for row in sorted(fresh + corrections)]
        # The whole batch is retried by the caller, re-reading what landed.
        insert_batch(client, "candles_1m", values, COLUMNS, NO_RETRY)
        if corrections:
            rebuild_pending(client)
    if stale:
        logger.warning("stale candle versions skipped", extra={"count": stale})
    return CandleWriteResult(len(fresh), unchanged, stale, len(corrections))
