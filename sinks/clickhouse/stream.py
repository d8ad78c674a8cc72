"""Bytewax sinks over the shared ClickHouse client (one per process: chDB
allows one owner, and worker threads share it behind its lock).

Delivery guarantee: effectively-once. Inserts carry content-derived
deduplication tokens and land in ReplacingMergeTree tables read with
``FINAL``, so a replay after a restart converges to the same rows.

Ticks and candles (the ingest flow's hot outputs) are written on a
background thread (``background``), overlapping the flow's Python work:
they are partitioned sinks with one partition, taking ``(key, rows)`` items,
because a partitioned sink's ``snapshot`` runs at the end of every epoch,
before Bytewax commits it, and waits there until every write has landed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

from flows.ingest.records import SourcedTick
from flows.portfolio.valuation_record import ValuationRecord
from schemas.alerts import alert_row
from sinks import metrics
from sinks.clickhouse.background import BackgroundWriter
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
        if rows:
            _write(self._spec, rows)


def _write(spec: _ClickHouseSink | _BackgroundClickHouseSink, rows: list[Any]) -> None:
    started = time.perf_counter()
    written = spec.write(spec.client, rows)
    metrics.ROWS.labels(spec.name).inc(written)
    metrics.BATCH_SECONDS.labels(spec.name).observe(time.perf_counter() - started)


@dataclass(frozen=True)
class _BackgroundClickHouseSink(FixedPartitionedSink[list[Any], None]):
    """One partition, so one writer thread and one writer per symbol (as the
    candle writer requires); items are ``(key, rows)``, the key is ignored."""

    client: ClickHouseClient
    name: str
    write: Callable[[ClickHouseClient, list[Any]], int]
    depth: int = 4  # batches queued behind the one being written

    def list_parts(self) -> list[str]:
        return [self.name]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _BackgroundPartition:
        return _BackgroundPartition(self)


class _BackgroundPartition(StatefulSinkPartition[list[Any], None]):
    def __init__(self, spec: _BackgroundClickHouseSink) -> None:
        self._writer = BackgroundWriter[Any](spec.name, lambda rows: _write(spec, rows), spec.depth)

    def write_batch(self, values: list[list[Any]]) -> None:
        rows = [row for batch in values for row in batch]
        if rows:
            self._writer.submit(rows)

    def snapshot(self) -> None:
        # Called at the end of each epoch, before it is committed: the
        # epoch's writes must have landed (or their failure stops the flow).
        self._writer.wait()

    def close(self) -> None:
        self._writer.close()


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


def ClickHouseTickSink(client: ClickHouseClient) -> _BackgroundClickHouseSink:  # noqa: N802 - a sink factory
    return _BackgroundClickHouseSink(client, "clickhouse:ticks", _ticks)


def ClickHouseCandleSink(client: ClickHouseClient) -> _BackgroundClickHouseSink:  # noqa: N802
    return _BackgroundClickHouseSink(client, "clickhouse:candles_1m", _candles)


def ClickHouseValuationSink(client: ClickHouseClient, window_kind: str) -> _ClickHouseSink:  # noqa: N802
    def write(c: ClickHouseClient, rows: list[ValuationRecord]) -> int:
        return insert_valuations(c, [valuation_row(v, window_kind) for v in rows])

    return _ClickHouseSink(client, f"clickhouse:valuations_{window_kind}", write)


def ClickHouseAlertSink(client: ClickHouseClient) -> _ClickHouseSink:  # noqa: N802
    return _ClickHouseSink(
        client, "clickhouse:alerts", lambda c, rows: insert_alerts(c, [alert_row(a) for a in rows])
    )
