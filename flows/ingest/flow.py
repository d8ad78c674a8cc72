"""The ingest dataflow factory: ``build_ingest_flow(source, sinks, config)``.

    market.ticks --validate--> dedup --> consolidate --> candles
          |rejected              |            |             |late
          v                      v            v             v
      pipeline.dlq          ticks store   prices (Redis,  candles (Kafka,
                            (ClickHouse)  Kafka)           ClickHouse)

State is keyed by input partition (``topic#partition``): ticks are keyed by
symbol, so each symbol's whole history lives in one shard, and every step
handles one consumed batch per call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import FixedPartitionedSink, Sink

from flows.ingest import metrics
from flows.ingest.candles import CandleBuilder
from flows.ingest.consolidate import Consolidator
from flows.ingest.dedup import resume
from flows.ingest.encode import (
    KeyedBytes,
    candle_message,
    dead_letter_message,
    latest_prices,
    price_messages,
)
from flows.ingest.records import Rejection
from flows.ingest.steps import CandleLogic, Clock, ConsolidateLogic, DedupLogic
from flows.ingest.validate import ValidationLimits, validate_batch
from schemas.envelope import RawBatch
from schemas.fast import TickDecoder


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class IngestConfig:
    limits: ValidationLimits = field(default_factory=ValidationLimits)
    dedup_horizon_ms: int = 600_000
    provider_priority: tuple[str, ...] = ("alpha", "beta", "gamma")
    provider_stale_ms: int = 5_000
    candle_ms: int = 60_000
    allowed_lateness_ms: int = 5_000
    flush_candles_at_eof: bool = True

    def __post_init__(self) -> None:
        # A tick behind the dedup horizon is dead-lettered as late: it must
        # be late for its candle too, or the two steps would disagree.
        if self.dedup_horizon_ms < self.candle_ms + self.allowed_lateness_ms:
            raise ValueError(
                f"dedup_horizon_ms ({self.dedup_horizon_ms}) must be at least candle_ms +"
                f" allowed_lateness_ms ({self.candle_ms + self.allowed_lateness_ms})"
            )


# An output takes lists of rows, or (shard, rows) if it is a partitioned sink
# (whose epoch snapshot can wait for writes it lets run in the background).
Store = Sink[list[Any]] | Sink[tuple[str, list[Any]]]


@dataclass(frozen=True)
class IngestSinks:
    """Where each output goes; ``None`` leaves that output unwired."""

    dead_letters: Sink[list[KeyedBytes]] | None = None
    tick_store: Store | None = None  # rows: SourcedTick
    price_cache: Store | None = None  # rows: PriceRow
    price_topic: Store | None = None  # rows: KeyedBytes
    candle_topic: Store | None = None  # rows: KeyedBytes
    candle_store: Store | None = None  # rows: CandleRow


def _validate(
    batch: RawBatch, clock: Clock, limits: ValidationLimits, decoder: TickDecoder
) -> tuple[Any, Any]:
    ticks, rejected = validate_batch(batch, clock(), limits, decoder)
    metrics.TICKS_IN.inc(len(batch.records))
    metrics.TICKS_VALID.inc(len(ticks))
    for rej in rejected:
        metrics.REJECTED.labels(rej.reason).inc()
    return ticks, rejected


def add_ingest(
    batches: Stream[RawBatch], sinks: IngestSinks, cfg: IngestConfig, clock: Clock
) -> tuple[Stream[Any], Stream[Any]]:
    """Wire the ingest steps; return (consolidated ticks keyed by price shard,
    rejections as lists) for the steps downstream."""
    keyed = op.key_on("by_shard", batches, lambda b: b.shard)
    decoder = cfg.limits.decoder()  # one per flow: its caches serve every batch
    checked = op.map_value("validate", keyed, lambda b: _validate(b, clock, cfg.limits, decoder))
    # An end marker (a batch with no records: nothing valid, nothing rejected)
    # goes on as an empty list: the valuation waits for every price shard.
    valid = op.filter_map_value("valid", checked, lambda r: r[0] if r[0] or not r[1] else None)
    invalid = op.filter_map_value("invalid", checked, lambda r: r[1] or None)

    deduped = op.stateful_batch(
        "dedup", valid, lambda s: DedupLogic(resume(s, cfg.dedup_horizon_ms))
    )
    fresh = op.filter_map_value("fresh", deduped, lambda o: o[1] if o[0] == "fresh" else None)
    stale = op.filter_map_value("stale", deduped, lambda o: o[1] if o[0] == "stale" else None)
    chosen = op.stateful_batch(
        "consolidate",
        fresh,
        lambda s: ConsolidateLogic(s or Consolidator(cfg.provider_priority, cfg.provider_stale_ms)),
    )
    candle_out = op.stateful_batch(
        "candles",
        chosen,
        lambda s: CandleLogic(
            s or CandleBuilder(cfg.candle_ms, cfg.allowed_lateness_ms),
            clock,
            cfg.flush_candles_at_eof,
        ),
    )
    candles = op.filter_map_value(
        "closed", candle_out, lambda o: o[1] if o[0] == "candles" else None
    )
    late = op.filter_map_value("late", candle_out, lambda o: o[1] if o[0] == "late" else None)
    _wire_outputs(sinks, fresh, chosen, candles)
    rejects = op.key_rm("ingest_rejects", op.merge("rejects", invalid, stale, late))
    return chosen, rejects


def add_dead_letters(rejects: Stream[Any], sink: Sink[list[KeyedBytes]], clock: Clock) -> None:
    dead = op.map("dead_letters", rejects, lambda rows: _dead_letters(rows, clock()))
    op.output("dead_letter_topic", dead, sink)


def build_ingest_flow(
    source: Source[RawBatch],
    sinks: IngestSinks,
    config: IngestConfig | None = None,
    clock: Clock = wall_clock_ms,
    flow_id: str = "folio-ingest",
) -> Dataflow:
    """Market data only: ticks in, prices, candles and dead letters out."""
    flow = Dataflow(flow_id)
    _, rejects = add_ingest(
        op.input("ticks_in", flow, source), sinks, config or IngestConfig(), clock
    )
    if sinks.dead_letters is not None:
        add_dead_letters(rejects, sinks.dead_letters, clock)
    return flow


def _wire_outputs(
    sinks: IngestSinks, fresh: Stream[Any], chosen: Stream[Any], candles: Stream[Any]
) -> None:
    if sinks.tick_store is not None:
        _store("tick_store", fresh, sinks.tick_store)
    if sinks.price_cache is not None:
        # The cache keeps only the newest price per symbol: reduce each batch
        # before building rows (the sink would drop the others anyway).
        _store("price_cache", op.map_value("price_rows", chosen, latest_prices), sinks.price_cache)
    if sinks.price_topic is not None:
        encoded = op.map_value("price_messages", chosen, price_messages)
        _store("price_topic", encoded, sinks.price_topic)
    if sinks.candle_topic is not None:
        encoded = op.map_value(
            "candle_messages", candles, lambda rows: [candle_message(r) for r in rows]
        )
        _store("candle_topic", encoded, sinks.candle_topic)
    if sinks.candle_store is not None:
        _store("candle_store", candles, sinks.candle_store)


def _store(step_id: str, keyed: Stream[Any], sink: Store) -> None:
    """A partitioned sink gets the (shard, rows) items, any other the rows."""
    if isinstance(sink, FixedPartitionedSink):
        op.output(step_id, keyed, sink)
    else:
        op.output(step_id, op.key_rm(f"{step_id}_unkeyed", keyed), sink)


def _dead_letters(rows: list[Rejection], now_ms: int) -> list[KeyedBytes]:
    for r in rows:
        metrics.DEAD_LETTERS.labels(r.stage, r.reason).inc()
    return [dead_letter_message(r, now_ms) for r in rows]
