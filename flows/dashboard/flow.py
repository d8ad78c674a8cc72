"""Dashboard steps of the pipeline: portfolio shard outputs, alerts and drift
rules, split by user shard, into one stateful step that emits changed cards.

    shard outputs ─ route ─┐
    alerts ─────── route ──┤
    rules ──────── route ──┴─ dashboard (per users#i) ─┬─ Redis document + channel
                                                       └─ Postgres ``dashboards``

The wall-clock ``flush_ms`` only decides how often cards go out; what is
stored (bodies, versions, ``as_of``) depends on the inputs alone
(``flows.dashboard.board``), so two runs of the same input, crashed and
restarted or not, with any number of workers, end with the same cards.

Benchmark prices come with the portfolio shard outputs
(``ShardOutput.benchmarks``): every portfolio shard sees every price, so
only ``benchmark_source`` (one of them) is forwarded, to each user shard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from flows.dashboard.board import DashboardUpdate
from flows.dashboard.compute import CardSettings
from flows.dashboard.shard import (
    DashboardShard,
    DashboardSnapshot,
    Router,
    ShardInput,
    Snapshotter,
    restore,
)
from flows.ingest.steps import Clock

_RETAIN = False


@dataclass(frozen=True)
class DashboardConfig:
    user_shards: int = 16
    flush_ms: int = 1_000  # at most one update per user per this much wall time
    cards: CardSettings = field(default_factory=CardSettings)
    drain_at_eof: bool = True

    def __post_init__(self) -> None:
        if self.user_shards < 1 or self.flush_ms < 0:
            raise ValueError("user_shards must be >= 1 and flush_ms >= 0")


@dataclass(frozen=True)
class DashboardSinks:
    cache: Sink[list[DashboardUpdate]] | None = None  # Redis document + publish
    store: Sink[list[DashboardUpdate]] | None = None  # Postgres ``dashboards``


class DashboardLogic(StatefulBatchLogic[ShardInput, list[DashboardUpdate], DashboardSnapshot]):
    """One user shard; flushes at most once per ``flush_ms`` (wall clock)."""

    def __init__(
        self,
        shard: DashboardShard,
        config: DashboardConfig,
        clock: Clock,
        snapshotter: Snapshotter | None = None,
    ) -> None:
        self.shard = shard
        self.config = config
        self.clock = clock
        self.snapshotter = snapshotter or Snapshotter()
        self.next_flush_ms = 0

    @classmethod
    def resume(
        cls, snapshot: DashboardSnapshot | None, config: DashboardConfig, clock: Clock
    ) -> DashboardLogic:
        if snapshot is None:
            return cls(DashboardShard(config.cards), config, clock)
        shard, snapshotter = restore(snapshot)
        shard.settings = config.cards
        return cls(shard, config, clock, snapshotter)

    def on_batch(self, values: list[ShardInput]) -> tuple[list[list[DashboardUpdate]], bool]:
        for item in values:
            self.shard.add(item)
        return self._flush(force=False), _RETAIN

    def on_notify(self) -> tuple[list[list[DashboardUpdate]], bool]:
        return self._flush(force=False), _RETAIN

    def on_eof(self) -> tuple[list[list[DashboardUpdate]], bool]:
        return self._flush(force=self.config.drain_at_eof), _RETAIN

    def notify_at(self) -> datetime | None:
        if not self.shard.pending:
            return None
        return datetime.fromtimestamp(self.next_flush_ms / 1000, tz=UTC)

    def snapshot(self) -> DashboardSnapshot:
        return self.snapshotter.take(self.shard)

    def _flush(self, force: bool) -> list[list[DashboardUpdate]]:
        now = self.clock()
        if not self.shard.pending or (not force and now < self.next_flush_ms):
            return []
        self.next_flush_ms = now + self.config.flush_ms
        updates = self.shard.flush()
        return [updates] if updates else []


def add_dashboard(
    shard_out: Stream[Any],
    alerts: Stream[Any] | None,
    sinks: DashboardSinks,
    config: DashboardConfig,
    portfolio_shards: tuple[str, ...],
    clock: Clock,
    rules: Stream[Any] | None = None,
) -> Stream[Any]:
    """Wire the dashboard; returns the stream of update lists.

    ``shard_out``: (portfolio shard, ``ShardOutput``) from ``add_valuation``;
    ``alerts``: lists of ``Alert`` (or None without alerts); ``rules``: the
    decoded ``alerts.rules`` batches, (changes, rejections) as
    ``flows.alerts.stream.decode_rules`` returns them, for drift targets.
    """
    router = Router(config.user_shards, portfolio_shards[0] if portfolio_shards else "")
    routed = op.flat_map("dashboard_route", shard_out, lambda kv: router.output(kv[0], kv[1]))
    if alerts is not None:
        routed_alerts = op.flat_map("dashboard_route_alerts", alerts, router.alerts)
        routed = op.merge("dashboard_in", routed, routed_alerts)
    if rules is not None:
        routed_rules = op.flat_map("dashboard_route_rules", rules, lambda r: router.rules(r[0]))
        routed = op.merge("dashboard_with_rules", routed, routed_rules)
    # Routed items are already (user shard, ShardInput): a keyed stream.
    updates = op.stateful_batch(
        "dashboard", routed, lambda s: DashboardLogic.resume(s, config, clock)
    )
    out = op.key_rm("dashboard_out", updates)
    if sinks.cache is not None:
        op.output("dashboard_cache", out, sinks.cache)
    if sinks.store is not None:
        op.output("dashboard_store", out, sinks.store)
    return out
