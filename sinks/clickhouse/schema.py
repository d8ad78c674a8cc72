"""ClickHouse tables, views and the rollup design; ``apply_schema`` is idempotent.

Sources of truth (ReplacingMergeTree, read with ``FINAL``):
- ``candles_1m``: 1-minute candles from the flow, ``version`` wins per
  (symbol, window_start).
- ``daily_bars``: backfilled daily bars. It is a separate *source* that feeds
  the same day/week/month rollups as the minute candles, rather than rows
  written into ``candles_1d`` itself, so that (1) weekly and monthly rollups
  cover backfilled history through the same views, (2) a re-run can compare
  bar by bar against stored values, and (3) a corrected bar can be recomputed
  from a table that holds plain values, which an aggregate-state table does not.

Rollups ``candles_1h/1d/1w/1mo`` are AggregatingMergeTree tables fed by
materialized views; read them with ``argMinMerge/argMaxMerge`` and
``max/min/sum`` grouped by ``bucket_start`` (see ``history``).

Why replays converge (a view sees every inserted block, not the deduplicated
table, so a naive view would double count a replayed candle):
- open/close are ``argMin/argMax`` states keyed by the candle start and
  high/low are ``max/min``: duplicates of the same candle cannot change them.
- volume and trades are sums, and no sum can ignore a duplicate without
  remembering every minute it saw (a state as large as the minute table). So
  duplicates are stopped *before* they reach the views, at two levels:
  1. ``writer.insert_candles`` holds the client lock, reads the stored
     versions of the batch's keys and inserts only new candles or newer
     versions: a replay in any batch split inserts nothing.
  2. Each insert carries an ``insert_deduplication_token`` derived from its
     content, with ``non_replicated_deduplication_window`` on the source and
     the rollups and ``deduplicate_blocks_in_dependent_materialized_views``:
     a retried insert whose first attempt did land (timeout after commit)
     is dropped by ClickHouse, views included.
- A correction (same candle, newer version, other values) goes through the
  views too, and then its buckets are recomputed from the sources
  (``rollups.rebuild_buckets``), as no aggregate state can retract a value.
  Its keys are queued in ``rollup_rebuilds`` first, so a crash before the
  recomputation is repaired by the next ``apply_schema``.
- Daily bars reach the views in bulk loads that ``backfill`` already
  compares bar by bar with what is stored, so the same reasoning holds.

Minute candles and daily bars never both count for one (symbol, day): the
first source stored for a day wins. Backfill skips days that already have
minute candles; a minute candle for a day that already has a daily bar is
stored with ``feeds_daily = 0`` and only feeds ``candles_1h``.
"""

from __future__ import annotations

import logging
import re

from sinks.clickhouse.client import ClickHouseClient
from sinks.clickhouse.rollups import (
    BUCKETS,
    DAILY_ROLLUPS,
    DAY_START,
    daily_rows_select,
    rebuild_pending,
    rollup_select,
)

logger = logging.getLogger(__name__)

DEDUP_WINDOW = 1000
PRICE = "Decimal(38, 12)"
TS = "DateTime64(3, 'UTC')"

_TTL_DAYS = re.compile(r"\bTTL toDateTime\(ts\) \+ toIntervalDay\((\d+)\)")

_TICKS = f"""
CREATE TABLE IF NOT EXISTS {{db}}.ticks (
    symbol LowCardinality(String),
    ts {TS},
    price {PRICE},
    volume Nullable({PRICE}),
    provider LowCardinality(String),
    currency LowCardinality(String),
    tick_id Nullable(String),
    ingested_at {TS} DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (symbol, ts, provider)
SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
"""

_CANDLES_1M = f"""
CREATE TABLE IF NOT EXISTS {{db}}.candles_1m (
    symbol LowCardinality(String),
    window_start {TS},
    window_end {TS},
    open {PRICE},
    high {PRICE},
    low {PRICE},
    close {PRICE},
    volume {PRICE},
    trades UInt32,
    currency LowCardinality(String),
    version UInt64,
    feeds_daily UInt8 DEFAULT 1 COMMENT '0: the day is covered by daily_bars'
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (symbol, window_start)
SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
"""

_DAILY_BARS = f"""
CREATE TABLE IF NOT EXISTS {{db}}.daily_bars (
    symbol LowCardinality(String),
    day Date,
    open {PRICE},
    high {PRICE},
    low {PRICE},
    close {PRICE},
    volume {PRICE},
    trades UInt32 DEFAULT 0,
    currency LowCardinality(String),
    version UInt64,
    loaded_at {TS} DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(version)
ORDER BY (symbol, day)
"""

_ROLLUP = f"""
CREATE TABLE IF NOT EXISTS {{db}}.{{name}} (
    symbol LowCardinality(String),
    bucket_start {TS},
    open AggregateFunction(argMin, {PRICE}, {TS}),
    high SimpleAggregateFunction(max, {PRICE}),
    low SimpleAggregateFunction(min, {PRICE}),
    close AggregateFunction(argMax, {PRICE}, {TS}),
    volume SimpleAggregateFunction(sum, {PRICE}),
    trades SimpleAggregateFunction(sum, UInt64),
    currency SimpleAggregateFunction(anyLast, LowCardinality(String))
) ENGINE = AggregatingMergeTree
PARTITION BY {{partition}}
ORDER BY (symbol, bucket_start)
SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
"""
_ROLLUP_PARTITIONS = {
    "candles_1h": "toYYYYMM(bucket_start)",
    "candles_1d": "toYear(bucket_start)",
    "candles_1w": "tuple()",
    "candles_1mo": "tuple()",
}

_VALUATIONS = f"""
CREATE TABLE IF NOT EXISTS {{db}}.valuations (
    portfolio_id String,
    user_id String,
    window_start {TS},
    window_end {TS},
    market_value {PRICE},
    cash {PRICE},
    cost_basis {PRICE},
    unrealized_pnl {PRICE},
    realized_pnl {PRICE},
    day_change Nullable({PRICE}),
    base_currency LowCardinality(String),
    payload String,
    version UInt64,
    window_kind LowCardinality(String)
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_end)
ORDER BY (portfolio_id, window_kind, window_end)
SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
"""

_ALERTS = f"""
CREATE TABLE IF NOT EXISTS {{db}}.alerts (
    alert_id String,
    rule_id String,
    user_id String,
    portfolio_id Nullable(String),
    symbol Nullable(String),
    kind LowCardinality(String),
    observed Nullable({PRICE}),
    threshold Nullable({PRICE}),
    message String,
    triggered_at {TS},
    payload String
) ENGINE = ReplacingMergeTree
ORDER BY alert_id
SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
"""


_ROLLUP_REBUILDS = f"""
CREATE TABLE IF NOT EXISTS {{db}}.rollup_rebuilds (
    symbol String,
    t {TS},
    queued_at {TS} DEFAULT now64(3)
) ENGINE = MergeTree
ORDER BY (symbol, t)
"""


def _views() -> list[str]:
    statements = []
    for name in BUCKETS:
        daily = name in DAILY_ROLLUPS
        minute_from = "{db}.candles_1m" + (" WHERE feeds_daily = 1" if daily else "")
        sources = [("1m", minute_from, "window_start")]
        if daily:
            sources.append(("daily_bars", "{db}.daily_bars", DAY_START))
        for label, from_sql, t in sources:
            select = rollup_select(name, from_sql, t)
            if (name, label) == ("candles_1d", "daily_bars"):
                select = daily_rows_select(from_sql)
            statements.append(
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.{name}_from_{label}"
                f" TO {{db}}.{name} AS {select}"
            )
    return statements


def schema_statements() -> list[str]:
    """Every DDL statement in order, with ``{db}`` left to fill in."""
    rollups = [
        _ROLLUP.replace("{name}", name).replace("{partition}", _ROLLUP_PARTITIONS[name])
        for name in BUCKETS
    ]
    return [
        _TICKS,
        _CANDLES_1M,
        _DAILY_BARS,
        *rollups,
        *_views(),
        _ROLLUP_REBUILDS,
        _VALUATIONS,
        _ALERTS,
    ]


def apply_schema(client: ClickHouseClient, ticks_ttl_days: int = 0) -> None:
    """Create the database, tables and views if missing; safe to re-run.

    The ticks TTL converges to ``ticks_ttl_days`` (0 removes it) on every
    run, without rewriting existing parts (``materialize_ttl_after_modify=0``:
    old parts expire at their next merge).
    """
    if ticks_ttl_days < 0:
        raise ValueError("ticks_ttl_days must be >= 0")
    db = f"`{client.database}`"
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    for statement in schema_statements():
        client.command(statement.replace("{db}", db))
    _converge_ticks_ttl(client, ticks_ttl_days)
    rebuild_pending(client)  # repair corrections interrupted by a crash


def _converge_ticks_ttl(client: ClickHouseClient, days: int) -> None:
    rows = client.query_rows(
        "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = 'ticks'",
        parameters={"db": client.database},
    )
    match = _TTL_DAYS.search(str(rows[0][0]) if rows else "")
    current = int(match.group(1)) if match else 0
    if current == days:
        return
    table = client.table("ticks")
    if days == 0:
        client.command(f"ALTER TABLE {table} REMOVE TTL")
    else:
        client.command(
            f"ALTER TABLE {table} MODIFY TTL toDateTime(ts) + INTERVAL {int(days)} DAY",
            settings={"materialize_ttl_after_modify": 0},
        )
    logger.info("ticks TTL set", extra={"ttl_days": days})
