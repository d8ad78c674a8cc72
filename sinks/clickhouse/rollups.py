"""Recompute rollup buckets from their sources, and scratch tables for it.

Aggregate states cannot retract a value, so when a stored candle or daily
bar is corrected (same key, other values) every bucket containing it is
deleted and recomputed from ``candles_1m FINAL`` and ``daily_bars FINAL``,
using the same ``rollup_select`` as the materialized views.

The changed keys are queued in ``rollup_rebuilds`` *before* the corrected
rows are stored and removed only after their buckets are recomputed, so a
crash in between is repaired by the next ``rebuild_pending`` (run by
``apply_schema`` at start-up and before every new correction).

Readers can see a bucket missing between the delete and the insert; writers
hold the client lock across both, so no other write in this process lands
in between.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator, Sequence

from sinks.clickhouse.client import ClickHouseClient

logger = logging.getLogger(__name__)

# Rollup name -> bucket start of a DateTime64(3, 'UTC') expression ``{t}``.
# Week buckets start on Monday. Day/week/month starts are midnight UTC.
BUCKETS: dict[str, str] = {
    "candles_1h": "toDateTime64(toStartOfHour({t}), 3, 'UTC')",
    "candles_1d": "toDateTime64(toStartOfDay({t}), 3, 'UTC')",
    "candles_1w": "toDateTime64(toMonday({t}), 3, 'UTC')",
    "candles_1mo": "toDateTime64(toStartOfMonth({t}), 3, 'UTC')",
}
DAILY_ROLLUPS = ("candles_1d", "candles_1w", "candles_1mo")


def rollup_select(name: str, from_sql: str, t: str) -> str:
    """``SELECT`` turning candle rows into ``name``'s aggregate states.

    ``from_sql`` yields rows with symbol, open, high, low, close, volume,
    trades, currency and a candle start ``t`` (a DateTime64(3, 'UTC')).
    """
    bucket = BUCKETS[name].format(t=t)
    return (
        f"SELECT symbol, {bucket} AS bucket_start,"
        f" argMinState(open, {t}) AS open, max(high) AS high, min(low) AS low,"
        f" argMaxState(close, {t}) AS close, sum(volume) AS volume,"
        " sum(toUInt64(trades)) AS trades, anyLast(currency) AS currency"
        f" FROM {from_sql} GROUP BY symbol, bucket_start"
    )


DAY_START = "toDateTime64(day, 3, 'UTC')"


def daily_rows_select(from_sql: str) -> str:
    """``SELECT`` turning each daily bar into one ``candles_1d`` row of states.

    A daily bar is its own day bucket, so no ``GROUP BY`` is needed: one
    state per row (``initializeAggregation``) costs less than half of
    grouping 2.5M single-row groups, and equal keys still merge as usual.
    """
    t = DAY_START
    return (
        f"SELECT symbol, {t} AS bucket_start,"
        f" initializeAggregation('argMinState', open, {t}) AS open, high, low,"
        f" initializeAggregation('argMaxState', close, {t}) AS close, volume,"
        f" toUInt64(trades) AS trades, currency FROM {from_sql}"
    )


KEYS_COLUMNS = "symbol String, t DateTime64(3, 'UTC')"
_CANDLE_COLUMNS = "symbol, open, high, low, close, volume, trades, currency"
# A rebuild writes exactly what it computed: never let ClickHouse discard it
# as a duplicate of an earlier block with the same bytes.
_NO_DEDUP = {"insert_deduplicate": 0}


@contextlib.contextmanager
def staging_table(
    client: ClickHouseClient, columns: str, order_by: str = "tuple()"
) -> Iterator[str]:
    """A uniquely named scratch MergeTree table, dropped on exit.

    On disk rather than ``Memory`` so a multi-million-row backfill does not
    need its size in RAM. A crash leaves a ``_stage_*`` table behind; it is
    inert and can be dropped by hand.
    """
    name = client.table(f"_stage_{uuid.uuid4().hex[:16]}")
    client.command(f"CREATE TABLE {name} ({columns}) ENGINE = MergeTree ORDER BY {order_by}")
    try:
        yield name
    finally:
        client.command(f"DROP TABLE IF EXISTS {name} SYNC")


def rebuild_buckets(client: ClickHouseClient, keys_table: str) -> None:
    """Recompute every rollup bucket containing a key of ``keys_table``.

    ``keys_table`` has ``KEYS_COLUMNS``: the symbol and start of each changed
    candle or bar (a day start for a daily bar).
    """
    db = f"`{client.database}`"
    symbols = f"symbol IN (SELECT DISTINCT symbol FROM {keys_table})"
    for name, bucket in BUCKETS.items():
        table = client.table(name)
        affected = f"SELECT DISTINCT symbol, {bucket.format(t='t')} FROM {keys_table}"
        client.command(f"DELETE FROM {table} WHERE (symbol, bucket_start) IN ({affected})")
        sources = [
            f"SELECT {_CANDLE_COLUMNS}, window_start AS t FROM {db}.candles_1m FINAL"
            f" WHERE {symbols}" + (" AND feeds_daily = 1" if name in DAILY_ROLLUPS else "")
        ]
        if name in DAILY_ROLLUPS:
            sources.append(
                f"SELECT {_CANDLE_COLUMNS}, {DAY_START} AS t FROM {db}.daily_bars FINAL"
                f" WHERE {symbols}"
            )
        from_sql = (
            f"({' UNION ALL '.join(sources)})"
            f" WHERE (symbol, {bucket.format(t='t')}) IN ({affected})"
        )
        client.command(
            f"INSERT INTO {table} " + rollup_select(name, from_sql, "t"), settings=_NO_DEDUP
        )
    logger.info("rollup buckets rebuilt", extra={"keys_table": keys_table})


def queue_rebuild(client: ClickHouseClient, keys: Sequence[tuple[str, int]]) -> None:
    """Queue (symbol, candle start epoch ms) keys whose buckets must be recomputed."""
    if keys:
        client.insert(client.table("rollup_rebuilds"), keys, ["symbol", "t"], _NO_DEDUP)


def queue_rebuild_from(client: ClickHouseClient, select_sql: str) -> None:
    """Queue the (symbol, t) rows of a ``SELECT``."""
    client.command(
        f"INSERT INTO {client.table('rollup_rebuilds')} (symbol, t) {select_sql}",
        settings=_NO_DEDUP,
    )


def rebuild_pending(client: ClickHouseClient) -> int:
    """Recompute the buckets of every queued key, then unqueue them.

    Returns how many keys were processed (0 when nothing was pending).
    """
    queue = client.table("rollup_rebuilds")
    with client.locked():
        count, snapshot_ms = client.query_rows(
            f"SELECT count(), toUnixTimestamp64Milli(max(queued_at)) FROM {queue}"
        )[0]
        if not count:
            return 0
        cutoff = f"queued_at <= fromUnixTimestamp64Milli({int(snapshot_ms)}, 'UTC')"
        rebuild_buckets(client, f"(SELECT symbol, t FROM {queue} WHERE {cutoff})")
        client.command(f"DELETE FROM {queue} WHERE {cutoff}")
    return int(count)
