"""Load daily bars from CSV into ``daily_bars`` (and so into the day, week and
month rollups).

Accepted headers (case-insensitive, any order, unknown columns ignored):
``symbol, date|ts, open, high, low, close[, volume]`` or
``symbol, date|ts, price[, volume]`` (a price becomes open = high = low =
close). ``date`` is ``YYYY-MM-DD``; ``ts`` may also be ISO-8601 with an
offset or epoch milliseconds, and names the UTC day it falls in. One
record per line: quoted fields holding line breaks are not supported.

Guarantees:
- All or nothing on bad input: every row is checked first (in ClickHouse,
  so 2.5M rows check in seconds) and any bad row raises ``BadRowsError``
  listing line numbers and reasons; nothing is stored then.
- Idempotent: a bar already stored with the same values is skipped, a bar
  stored with other values is replaced (new version) and its rollup buckets
  are recomputed, so re-running a file, or a corrected file, converges.
- A day that already has 1-minute candles for the symbol is skipped
  (``skipped_overlap``): one source per (symbol, day), see ``schema``.

The file is read by this process and streamed as CSV, so the same code
works against chDB and a remote server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TextIO

from schemas.common import normalize_currency
from sinks.clickhouse.backfill_csv import BadRowsError, Layout, RowError, typed_select
from sinks.clickhouse.client import ClickHouseClient
from sinks.clickhouse.rollups import queue_rebuild_from, rebuild_pending, staging_table

logger = logging.getLogger(__name__)

_CSV_SETTINGS = {
    "input_format_csv_allow_variable_number_of_columns": 1,
    "input_format_csv_detect_header": 0,
    "format_csv_allow_single_quotes": 0,
}
# Inserts here are already made idempotent by comparing with stored bars;
# never let ClickHouse drop a block for having the bytes of an earlier one.
_NO_DEDUP = {"insert_deduplicate": 0}
# Two cores: feed the three rollup views in parallel; leave merging equal
# keys to background merges (queries aggregate by bucket anyway).
# Large blocks: fewer, larger parts from each view.
_BULK_INSERT = {
    **_NO_DEDUP,
    "parallel_view_processing": 1,
    "optimize_on_insert": 0,
    "max_block_size": 1_000_000,
    "min_insert_block_size_rows": 1_000_000,
    "min_insert_block_size_bytes": 0,
}
_BAR_COLUMNS = (
    "line UInt64, symbol LowCardinality(String), day Date, open Decimal(38, 12),"
    " high Decimal(38, 12), low Decimal(38, 12), close Decimal(38, 12), volume Decimal(38, 12)"
)
_BAR_NAMES = "line, symbol, day, open, high, low, close, volume"


@dataclass(frozen=True)
class BackfillResult:
    rows: int
    inserted: int
    unchanged: int
    corrected: int
    skipped_overlap: int


def backfill_daily_bars(
    client: ClickHouseClient,
    csv_path: Path | str,
    *,
    currency: str = "USD",
    chunk_lines: int = 500_000,
    max_errors: int = 20,
) -> BackfillResult:
    """Load ``csv_path`` into ``daily_bars``; see the module docstring."""
    path = Path(csv_path)
    currency = normalize_currency(currency)
    # utf-8-sig drops a spreadsheet's byte-order mark; undecodable bytes become
    # U+FFFD and so fail the row's checks with its line number.
    with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as handle:
        layout = Layout.from_header(path, handle.readline())
        raw_columns = ", ".join(["line UInt64", *layout.stage_columns()])
        with staging_table(client, raw_columns) as raw:
            rows = _stage_lines(client, raw, layout, handle, chunk_lines)
            typed_columns = f"{_BAR_COLUMNS}, reason String"
            with staging_table(client, typed_columns) as typed:
                # One pass types every row and says why it is bad, if it is.
                client.command(
                    f"INSERT INTO {typed} ({_BAR_NAMES}, reason) {typed_select(layout, raw)}",
                    settings=_NO_DEDUP,
                )
                _check_rows(client, path, typed, max_errors)
                _check_duplicates(client, path, typed, max_errors)
                result = _store(client, typed, currency, rows)
    logger.info("daily bars loaded", extra={"path": str(path), **result.__dict__})
    return result


def _stage_lines(
    client: ClickHouseClient, raw: str, layout: Layout, handle: TextIO, chunk_lines: int
) -> int:
    """Stream the file into ``raw`` with its line numbers; returns data rows."""
    rows = 0
    columns = ["line", *layout.stage_names()]
    for count, text in _numbered_chunks(handle, chunk_lines):
        rows += count
        client.raw_insert(raw, columns, text.encode(), "CSV", {**_CSV_SETTINGS, **_NO_DEDUP})
    return rows


def _numbered_chunks(handle: TextIO, chunk_lines: int) -> Iterator[tuple[int, str]]:
    """(rows, CSV text) with each non-blank line prefixed by its line number
    (the header is line 1). Python does nothing else per line: it is the
    only per-row cost outside ClickHouse."""
    number = 2
    while lines := list(islice(handle, chunk_lines)):
        numbered = [f"{n},{line}" for n, line in enumerate(lines, start=number) if line.strip()]
        number += len(lines)
        if numbered:
            if not numbered[-1].endswith("\n"):
                numbered[-1] += "\n"
            yield len(numbered), "".join(numbered)


def _check_rows(client: ClickHouseClient, path: Path, typed: str, max_errors: int) -> None:
    total = int(client.query_rows(f"SELECT count() FROM {typed} WHERE reason != ''")[0][0])
    if total:
        found = client.query_rows(
            f"SELECT line, reason FROM {typed} WHERE reason != ''"
            f" ORDER BY line LIMIT {int(max_errors)}"
        )
        raise BadRowsError(path, [RowError(int(n), str(r)) for n, r in found], total)


def _check_duplicates(client: ClickHouseClient, path: Path, typed: str, max_errors: int) -> None:
    counts = f"SELECT count() AS n FROM {typed} GROUP BY symbol, day HAVING n > 1"
    total = int(client.query_rows(f"SELECT sum(n - 1) FROM ({counts})")[0][0] or 0)
    if total:  # only now collect line numbers, which costs twice as much
        duplicates = (
            f"SELECT symbol, day, arraySort(groupArray(line)) AS lines FROM {typed}"
            " GROUP BY symbol, day HAVING count() > 1"
        )
        found = client.query_rows(f"{duplicates} ORDER BY lines[1] LIMIT {max_errors}")
        errors = [
            RowError(
                int(lines[1]), f"duplicate bar for {symbol} on {day} (first at line {lines[0]})"
            )
            for symbol, day, lines in found
        ]
        raise BadRowsError(path, errors, total)


def _store(client: ClickHouseClient, typed: str, currency: str, rows: int) -> BackfillResult:
    """Classify staged bars against stored ones, insert, recompute corrections."""
    bars, candles = client.table("daily_bars"), client.table("candles_1m")
    symbols = f"symbol IN (SELECT DISTINCT symbol FROM {typed})"
    stored = "sipHash64(open, high, low, close, volume, toString(currency))"
    staged = "sipHash64(t.open, t.high, t.low, t.close, t.volume, {cur:String})"
    status = (
        f"multiIf(e.symbol != '', if(e.content = {staged}, 'unchanged', 'corrected'),"
        f" (t.symbol, t.day) IN (SELECT DISTINCT symbol, toDate(window_start) FROM {candles}"
        f" WHERE {symbols}), 'overlap', 'new')"
    )
    classified_columns = f"{_BAR_COLUMNS}, status LowCardinality(String)"
    with client.locked(), staging_table(client, classified_columns) as classified:
        client.command(
            f"INSERT INTO {classified} SELECT t.line, t.symbol, t.day, t.open, t.high, t.low,"
            f" t.close, t.volume, {status} FROM {typed} AS t LEFT JOIN"
            f" (SELECT symbol, day, argMax({stored}, version) AS content FROM {bars}"
            f" WHERE {symbols} GROUP BY symbol, day) AS e"
            " ON t.symbol = e.symbol AND t.day = e.day",
            parameters={"cur": currency},
            settings=_NO_DEDUP,
        )
        counts = dict(
            client.query_rows(f"SELECT status, count() FROM {classified} GROUP BY status")
        )
        if counts.get("corrected"):
            rebuild_pending(client)  # earlier, interrupted corrections first
            queue_rebuild_from(
                client,
                f"SELECT symbol, toDateTime64(day, 3, 'UTC') FROM {classified}"
                " WHERE status = 'corrected'",
            )
        client.command(
            f"INSERT INTO {bars} (symbol, day, open, high, low, close, volume, trades, currency,"
            " version) SELECT symbol, day, open, high, low, close, volume, 0, {cur:String},"
            f" {{version:UInt64}} FROM {classified} WHERE status IN ('new', 'corrected')",
            parameters={"cur": currency, "version": time.time_ns() // 1000},
            settings=_BULK_INSERT,
        )
        if counts.get("corrected"):
            rebuild_pending(client)
    return BackfillResult(
        rows=rows,
        inserted=int(counts.get("new", 0)),
        unchanged=int(counts.get("unchanged", 0)),
        corrected=int(counts.get("corrected", 0)),
        skipped_overlap=int(counts.get("overlap", 0)),
    )


__all__ = ["BackfillResult", "BadRowsError", "RowError", "backfill_daily_bars"]
