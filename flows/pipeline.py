"""The whole pipeline as one dataflow: market data and portfolios.

ticks ─ ingest ─┬─ prices, candles, tick history
                └─ consolidated prices ─ valuation ─┬─ valuations
transactions ───────────────────────────────────────┴─ ledger, positions
valuation outputs + alerts ─ dashboard ─ cards (Redis, Postgres)
every rejection ─ pipeline.dlq
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.alerts.engine import RuleBook
from flows.alerts.metrics import ALERTS_FIRED
from flows.alerts.stream import (
    PortfolioAlertLogic,
    PriceAlertLogic,
    PriceAlerts,
    decode_rules,
    route_rules,
)
from flows.dashboard.flow import DashboardConfig, DashboardSinks, add_dashboard
from flows.ingest.encode import KeyedBytes
from flows.ingest.flow import IngestConfig, IngestSinks, add_dead_letters, add_ingest, wall_clock_ms
from flows.ingest.steps import Clock
from flows.valuation.flow import ValuationConfig, ValuationSinks, add_valuation
from schemas.alerts import Alert, alert_record
from schemas.envelope import RawBatch


@dataclass(frozen=True)
class PipelineSources:
    ticks: Source[RawBatch]
    transactions: Source[RawBatch] | None = None
    rules: Source[RawBatch] | None = None


@dataclass(frozen=True)
class AlertSinks:
    alert_topic: Sink[list[KeyedBytes]] | None = None
    alert_store: Sink[list[Alert]] | None = None
    alert_channel: Sink[list[Alert]] | None = None
    alert_history: Sink[list[Alert]] | None = None


@dataclass(frozen=True)
class PipelineSinks:
    ingest: IngestSinks
    valuation: ValuationSinks
    alerts: AlertSinks = field(default_factory=AlertSinks)
    dead_letters: Sink[list[KeyedBytes]] | None = None
    dashboard: DashboardSinks | None = None  # None: no dashboard step


@dataclass(frozen=True)
class PipelineConfig:
    ingest: IngestConfig
    valuation: ValuationConfig
    price_shards: tuple[str, ...] = ()  # keys of the tick input partitions (alert routing)
    # Alerts wait for the end markers of this many rules partitions after
    # each (re)start (flows.alerts.stream); 0: no waiting (sources without
    # end markers).
    rule_partitions: int = 0
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)


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
    shard_out: Stream[Any] | None = None
    alerts: Stream[Any] | None = None
    rules: Stream[Any] | None = None  # decoded rule changes (drift targets for the dashboard)
    if sources.transactions is not None:
        txns = op.input("transactions_in", flow, sources.transactions)
        valuation = config.valuation
        if sinks.dashboard is not None:  # the shards report the cards' benchmark prices
            benchmarks = valuation.benchmark_symbols | {config.dashboard.cards.benchmark}
            valuation = replace(valuation, benchmark_symbols=benchmarks)
        txn_rejects, shard_out = add_valuation(prices, txns, sinks.valuation, valuation, clock)
        rejects = op.merge("all_rejects", rejects, txn_rejects)
    if sources.rules is not None:
        rule_in = op.input("rules_in", flow, sources.rules)
        rule_rejects, alerts, rules = _add_alerts(
            rule_in, prices, shard_out, sinks.alerts, config, clock
        )
        rejects = op.merge("with_rule_rejects", rejects, rule_rejects)
    if shard_out is not None and sinks.dashboard is not None:
        shards = config.valuation.portfolio_shards
        add_dashboard(shard_out, alerts, sinks.dashboard, config.dashboard, shards, clock, rules)
    if sinks.dead_letters is not None:
        add_dead_letters(rejects, sinks.dead_letters, clock)
    return flow


def _add_alerts(
    rule_batches: Stream[Any],
    prices: Stream[Any],
    shard_out: Stream[Any] | None,
    sinks: AlertSinks,
    config: PipelineConfig,
    clock: Clock,
) -> tuple[Stream[Any], Stream[Any], Stream[Any]]:
    """Wire alerts; returns (rule rejections, alert lists for the dashboard,
    decoded rule changes)."""
    decoded = op.map("decode_rules", rule_batches, decode_rules)
    portfolio_shards = config.valuation.portfolio_shards if shard_out is not None else ()
    routed = op.flat_map(
        "route_rules", decoded, lambda r: route_rules(r[0], config.price_shards, portfolio_shards)
    )
    rules_by_shard = op.key_on("rules_by_shard", routed, lambda kv: kv[0])
    rule_changes = op.map_value("rule_changes", rules_by_shard, lambda kv: kv[1])
    price_keys, portfolio_keys = set(config.price_shards), set(portfolio_shards)
    price_rules = op.filter("price_rules", rule_changes, lambda kv: kv[0] in price_keys)
    portfolio_rules = op.filter("portfolio_rules", rule_changes, lambda kv: kv[0] in portfolio_keys)
    price_in = op.merge(
        "price_alert_in",
        price_rules,
        op.map_value("prices_for_alerts", prices, lambda ticks: ("prices", ticks)),
    )
    alerts = op.stateful_batch(
        "price_alerts",
        price_in,
        lambda s: PriceAlertLogic(s or PriceAlerts(), clock, config.rule_partitions),
    )
    if shard_out is not None:
        portfolio_in = op.merge(
            "portfolio_alert_in",
            portfolio_rules,
            op.map_value("outputs_for_alerts", shard_out, lambda out: ("outputs", out)),
        )
        portfolio_alerts = op.stateful_batch(
            "portfolio_alerts",
            portfolio_in,
            lambda s: PortfolioAlertLogic(s or RuleBook(), config.rule_partitions),
        )
        alerts = op.merge("all_alerts", alerts, portfolio_alerts)
    unkeyed = op.key_rm("alerts_unkeyed", alerts)
    _wire_alerts(unkeyed, sinks)
    return op.filter_map("rule_rejects", decoded, lambda r: r[1] or None), unkeyed, decoded


def _wire_alerts(alerts: Stream[Any], sinks: AlertSinks) -> None:
    counted = op.map("count_alerts", alerts, _count_alerts)
    if sinks.alert_topic is not None:
        encoded = op.map("alert_messages", counted, lambda rows: [alert_record(a) for a in rows])
        op.output("alert_topic", encoded, sinks.alert_topic)
    for name in ("alert_store", "alert_channel", "alert_history"):
        sink = getattr(sinks, name)
        if sink is not None:
            op.output(name, counted, sink)


def _count_alerts(alerts: list[Alert]) -> list[Alert]:
    for alert in alerts:
        ALERTS_FIRED.labels(alert.kind.value).inc()
    return alerts
