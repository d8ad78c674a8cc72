"""Bytewax sinks over the shared ClickHouse client (one per process: chDB
allows one owner, and worker threads share it behind its lock).

Delivery guarantee: effectively-once. Inserts carry content-derived
deduplication tokens and land in ReplacingMergeTree tables read with
``FINAL``, so a replay after a restart converges to the same rows.

Ticks and candles (the ingest flow's hot outputs) are written on a
background thread (``sinks.background.InBackground``), overlapping the
flow's Python work, and awaited at the end of every epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.ingest.records import SourcedTick
from flows.portfolio.valuation_record import ValuationRecord
from schemas.alerts import alert_row
from sinks import metrics
from sinks.background import InBackground
from sinks.clickhouse.candles import CandleRow, insert_candles
from sinks.clickhouse.client import ClickHouseClient
from sinks.clickhouse.writer import (
    ValuationRow,
    insert_alerts,
    insert_ticks,
    insert_valuations,
)


@dataclass(frozen=True)
class _ClickHouseSink(DynamicSink[list[Any]]):
    client: ClickHouseClient
    name: str
    write: Callable[[ClickHouseClient, list[Any]], int]

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(self)


class _Partition(StatelessSinkPartition[list[Any]]):
    def __init__(self, spec: _ClickHouseSink) -> None:
        self._spec = spec

    def write_batch(self, items: list[list[Any]]) -> None:
        rows = [row for batch in items for row in batch]
        if not rows:
            return
        started = time.perf_counter()
        written = self._spec.write(self._spec.client, rows)
        metrics.ROWS.labels(self._spec.name).inc(written)
        metrics.BATCH_SECONDS.labels(self._spec.name).observe(time.perf_counter() - started)


def _ticks(client: ClickHouseClient, rows: list[SourcedTick]) -> int:
    return insert_ticks(client, [r.tick for r in rows])


def _candles(client: ClickHouseClient, rows: list[CandleRow]) -> int:
    insert_candles(client, rows)
    return len(rows)


def valuation_row(v: ValuationRecord, window_kind: str) -> ValuationRow:
    return ValuationRow(
        v.portfolio_id,
        v.user_id,
        v.window_start_ms,
        v.window_end_ms,
        v.market_value,
        v.cash,
        v.cost_basis,
        v.unrealized_pnl,
        v.realized_pnl,
        v.day_change,
        v.base_currency,
        v.json.decode(),
        v.version,
        window_kind,
    )


def ClickHouseTickSink(client: ClickHouseClient) -> InBackground:  # noqa: N802 - a sink factory
    return InBackground(_ClickHouseSink(client, "clickhouse:ticks", _ticks), "clickhouse:ticks")


def ClickHouseCandleSink(client: ClickHouseClient) -> InBackground:  # noqa: N802
    name = "clickhouse:candles_1m"
    return InBackground(_ClickHouseSink(client, name, _candles), name)


def ClickHouseValuationSink(client: ClickHouseClient, window_kind: str) -> _ClickHouseSink:  # noqa: N802
    def write(c: ClickHouseClient, rows: list[ValuationRecord]) -> int:
        return insert_valuations(c, [valuation_row(v, window_kind) for v in rows])

    return _ClickHouseSink(client, f"clickhouse:valuations_{window_kind}", write)


def ClickHouseAlertSink(client: ClickHouseClient) -> _ClickHouseSink:  # noqa: N802
    return _ClickHouseSink(
        client, "clickhouse:alerts", lambda c, rows: insert_alerts(c, [alert_row(a) for a in rows])
    )
