"""Valuation steps of the pipeline: coalesce prices per price shard,
broadcast the closed windows to every portfolio shard, where transactions
(keyed by portfolio, so already sharded by partition) meet them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.outputs import Sink

from flows.ingest.encode import KeyedBytes
from flows.ingest.records import Rejection
from flows.ingest.steps import Clock
from flows.portfolio.valuation_record import ValuationRecord
from flows.valuation.coalesce import ClosedWindows, PriceCoalescer
from flows.valuation.shard import DEFAULT_BENCHMARKS, AppliedTransaction, ShardOutput
from flows.valuation.steps import CoalesceLogic, PortfolioShardLogic
from flows.valuation.transactions import decode_transactions


@dataclass(frozen=True)
class ValuationConfig:
    portfolio_shards: tuple[str, ...]  # keys of the transaction input partitions
    live_window_ms: int = 1_000
    history_window_ms: int = 60_000
    allowed_lateness_ms: int = 5_000
    max_message_bytes: int = 64 * 1024
    drain_at_eof: bool = True
    # After each (re)start, value no window until the shard's transaction
    # partition was read to its end (the source's end marker, an empty
    # batch): a backlog of transactions then never falls behind prices that
    # were read faster, so the result does not depend on which input the
    # consumers happened to fetch first.
    wait_for_transactions: bool = False
    # Keys of the tick input partitions: no window is valued before each
    # reported a watermark or that it has no ticks (needs end markers).
    price_shards: tuple[str, ...] = ()
    # Symbols whose window prices the shards report (the dashboard's benchmark).
    benchmark_symbols: frozenset[str] = DEFAULT_BENCHMARKS


@dataclass(frozen=True)
class ValuationSinks:
    valuation_topic: Sink[list[KeyedBytes]] | None = None
    valuation_cache: Sink[list[ValuationRecord]] | None = None
    latest_store: Sink[list[ValuationRecord]] | None = None
    history_store: Sink[list[ValuationRecord]] | None = None
    ledger_store: Sink[list[AppliedTransaction]] | None = None


def _broadcast(closed: ClosedWindows, shards: tuple[str, ...]) -> list[tuple[str, Any]]:
    return [(shard, ("prices", closed)) for shard in shards]


def add_valuation(
    prices: Stream[Any],
    transactions: Stream[Any],
    sinks: ValuationSinks,
    cfg: ValuationConfig,
    clock: Clock,
) -> tuple[Stream[Any], Stream[Any]]:
    """Wire valuation; returns (rejections as lists for the DLQ, the shard
    outputs keyed by portfolio shard, for the steps downstream).

    ``prices``: keyed stream of consolidated tick lists per price shard;
    ``transactions``: stream of ``RawBatch`` from the transactions topic.
    """
    closed = op.stateful_batch(
        "coalesce",
        prices,
        lambda s: CoalesceLogic(
            s or PriceCoalescer("", cfg.live_window_ms, cfg.allowed_lateness_ms),
            clock,
            cfg.drain_at_eof,
        ),
    )
    routed = op.flat_map(
        "broadcast_prices",
        closed,
        lambda kv: _broadcast(kv[1]._replace(shard=kv[0]), cfg.portfolio_shards),
    )
    keyed_txns = op.key_on("txn_shard", transactions, lambda b: b.shard)
    decoded = op.map_value(
        "decode_txns",
        keyed_txns,
        lambda b: decode_transactions(b, cfg.max_message_bytes) if b.records else None,
    )
    good = op.filter_map_value("txns", decoded, lambda r: _shard_input(r, cfg))
    bad = op.filter_map_value("bad_txns", decoded, lambda r: (r[1] or None) if r else None)
    shard_in = op.merge("shard_in", routed, good)
    outputs = op.stateful_batch(
        "portfolios",
        shard_in,
        lambda s: PortfolioShardLogic.resume(
            s,
            cfg.live_window_ms,
            cfg.history_window_ms,
            clock,
            cfg.drain_at_eof,
            cfg.wait_for_transactions,
            cfg.price_shards,
            cfg.benchmark_symbols,
        ),
    )
    out = op.key_rm("portfolio_out", outputs)
    _wire(out, sinks)
    ledger_rejects = op.filter_map("ledger_rejects", out, _rejections)
    rejects = op.merge("txn_rejects", op.key_rm("bad_txns_unkeyed", bad), ledger_rejects)
    return rejects, outputs


def _shard_input(decoded: Any, cfg: ValuationConfig) -> tuple[str, Any] | None:
    """Good transactions for the shard; an end marker (``None``: the batch
    had no records) as ``("caught_up", None)`` when the shard waits for it."""
    if decoded is None:
        return ("caught_up", None) if cfg.wait_for_transactions else None
    return ("txns", decoded[0]) if decoded[0] else None


def _wire(out: Stream[ShardOutput], sinks: ValuationSinks) -> None:
    live = op.filter_map("live", out, lambda o: o.live or None)
    if sinks.valuation_topic is not None:
        encoded = op.map(
            "valuation_messages",
            live,
            lambda vs: [(v.portfolio_id, v.json) for v in vs],
        )
        op.output("valuation_topic", encoded, sinks.valuation_topic)
    if sinks.valuation_cache is not None:
        op.output("valuation_cache", live, sinks.valuation_cache)
    if sinks.latest_store is not None:
        op.output("latest_store", live, sinks.latest_store)
    if sinks.history_store is not None:
        history = op.filter_map("history", out, lambda o: o.history or None)
        op.output("history_store", history, sinks.history_store)
    if sinks.ledger_store is not None:
        applied = op.filter_map("applied", out, lambda o: o.applied or None)
        op.output("ledger_store", applied, sinks.ledger_store)


def _rejections(out: ShardOutput) -> list[Rejection] | None:
    rows = [
        Rejection(
            result.reason or "rejected",
            result.detail,
            "ledger",
            topic,
            partition,
            offset,
            txn.portfolio_id.encode(),
            txn.model_dump_json().encode(),
        )
        for txn, result, (topic, partition, offset) in out.rejected
    ]
    return rows or None
