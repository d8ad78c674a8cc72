"""The whole pipeline as one dataflow: market data and portfolios.

ticks ─ ingest ─┬─ prices, candles, tick history
                └─ consolidated prices ─ valuation ─┬─ valuations
transactions ───────────────────────────────────────┴─ ledger, positions
every rejection ─ pipeline.dlq
"""

from __future__ import annotations

from dataclasses import dataclass

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.ingest.encode import KeyedBytes
from flows.ingest.flow import IngestConfig, IngestSinks, add_dead_letters, add_ingest, wall_clock_ms
from flows.ingest.steps import Clock
from flows.valuation.flow import ValuationConfig, ValuationSinks, add_valuation
from schemas.envelope import RawBatch


@dataclass(frozen=True)
class PipelineSources:
    ticks: Source[RawBatch]
    transactions: Source[RawBatch] | None = None


@dataclass(frozen=True)
class PipelineSinks:
    ingest: IngestSinks
    valuation: ValuationSinks
    dead_letters: Sink[list[KeyedBytes]] | None = None


@dataclass(frozen=True)
class PipelineConfig:
    ingest: IngestConfig
    valuation: ValuationConfig


def build_flow(
    sources: PipelineSources,
    sinks: PipelineSinks,
    config: PipelineConfig,
    clock: Clock = wall_clock_ms,
    flow_id: str = "folio",
) -> Dataflow:
    flow = Dataflow(flow_id)
    prices, rejects = add_ingest(
        op.input("ticks_in", flow, sources.ticks), sinks.ingest, config.ingest, clock
    )
    if sources.transactions is not None:
        txns = op.input("transactions_in", flow, sources.transactions)
        txn_rejects = add_valuation(prices, txns, sinks.valuation, config.valuation, clock)
        rejects = op.merge("all_rejects", rejects, txn_rejects)
    if sinks.dead_letters is not None:
        add_dead_letters(rejects, sinks.dead_letters, clock)
    return flow
