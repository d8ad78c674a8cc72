"""Bytewax wrappers: price coalescing per price shard, portfolio shards."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from bytewax.operators import StatefulBatchLogic

from flows.ingest.quiet import restarted
from flows.ingest.records import SourcedTick
from flows.ingest.steps import Clock
from flows.portfolio.fast_valuation import Valuer
from flows.valuation import metrics
from flows.valuation.coalesce import ClosedWindows, PriceCoalescer
from flows.valuation.shard import DEFAULT_BENCHMARKS, PortfolioShard, ShardOutput
from flows.valuation.snapshot import ShardSnapshot, ShardSnapshotter, restore

_RETAIN = False
_END_OF_TIME = 2**62


def _at(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


class CoalesceLogic(StatefulBatchLogic[list[SourcedTick], ClosedWindows, PriceCoalescer]):
    def __init__(self, state: PriceCoalescer, clock: Clock, release_at_eof: bool) -> None:
        self.state = state
        self.clock = clock
        self.release_at_eof = release_at_eof
        # Built once per execution: a restored shard's downtime is not a quiet feed.
        state.newest_at_sys_ms = restarted(state.newest_at_sys_ms, clock())

    def on_batch(self, values: list[list[SourcedTick]]) -> tuple[list[ClosedWindows], bool]:
        now = self.clock()
        released = [r for ticks in values if (r := self.state.add(ticks, now)) is not None]
        return released, _RETAIN

    def on_notify(self) -> tuple[list[ClosedWindows], bool]:
        released = self.state.release(self.clock())
        return ([released] if released else []), _RETAIN

    def on_eof(self) -> tuple[list[ClosedWindows], bool]:
        released = self.state.release_all() if self.release_at_eof else None
        return ([released] if released else []), _RETAIN

    def notify_at(self) -> datetime | None:
        return _at(self.state.next_release_sys_ms())

    def snapshot(self) -> PriceCoalescer:
        return copy.deepcopy(self.state)


# ("prices", ClosedWindows), ("txns", [SourcedTransaction]) or ("caught_up", None)
ShardIn = tuple[str, Any]


class PortfolioShardLogic(StatefulBatchLogic[ShardIn, ShardOutput, ShardSnapshot]):
    def __init__(
        self,
        state: PortfolioShard,
        clock: Clock,
        drain_at_eof: bool,
        snapshotter: ShardSnapshotter | None = None,
        wait_for_input: bool = False,
        price_shards: tuple[str, ...] = (),
    ) -> None:
        self.state = state
        self.clock = clock
        self.drain_at_eof = drain_at_eof
        self.snapshotter = snapshotter or ShardSnapshotter()
        # Not part of the snapshot: every (re)start waits for the end marker
        # of the transaction partition again (see ValuationConfig).
        self.ready = not wait_for_input
        self.price_shards = price_shards  # each must report before a window is valued
        state.__dict__.setdefault("empty_price_shards", set())  # older snapshots

    @classmethod
    def resume(
        cls,
        snapshot: ShardSnapshot | PortfolioShard | None,
        window_ms: int,
        history_ms: int,
        clock: Clock,
        drain_at_eof: bool,
        wait_for_input: bool = False,
        price_shards: tuple[str, ...] = (),
        benchmark_symbols: frozenset[str] = DEFAULT_BENCHMARKS,
    ) -> PortfolioShardLogic:
        """From the last snapshot, or a new shard when there is none."""
        if snapshot is None:
            shard, snapshotter = PortfolioShard(window_ms, history_ms), None
        elif isinstance(snapshot, PortfolioShard):  # a deep copy, as snapshots used to be
            snapshot.__dict__.setdefault("valuer", Valuer())
            snapshot.__dict__.setdefault("dirty", set())
            shard, snapshotter = snapshot, None
        else:
            shard, snapshotter = restore(snapshot)
        shard.benchmark_symbols = benchmark_symbols  # configuration, not state
        return cls(shard, clock, drain_at_eof, snapshotter, wait_for_input, price_shards)

    def on_batch(self, values: list[ShardIn]) -> tuple[list[ShardOutput], bool]:
        for kind, payload in values:
            if kind == "prices":
                self.state.add_prices(payload)
            elif kind == "txns":
                self.state.add_transactions(payload)
            else:  # "caught_up": the transaction partition was read to its end
                self.ready = True
        if not (self.ready and self.state.heard_from(self.price_shards)):
            return [], _RETAIN  # prices and transactions wait in the (snapshotted) state
        return self._emit(self.state.advance()), _RETAIN

    def on_eof(self) -> tuple[list[ShardOutput], bool]:
        if not self.drain_at_eof:
            return [], _RETAIN
        return self._emit(self.state.advance(_END_OF_TIME)), _RETAIN

    def snapshot(self) -> ShardSnapshot:
        # Not a deep copy: that stalls the worker for seconds per shard.
        return self.snapshotter.take(self.state)

    def _emit(self, out: ShardOutput) -> list[ShardOutput]:
        now = self.clock()
        mark = self.state.watermark()
        if mark is not None:
            metrics.WINDOW_LAG.set(max(0, now - mark) / 1000)
        if not out:
            return []
        metrics.VALUATIONS.labels("live").inc(len(out.live))
        metrics.VALUATIONS.labels("history").inc(len(out.history))
        metrics.TRANSACTIONS.labels("applied").inc(len(out.applied))
        metrics.TRANSACTIONS.labels("rejected").inc(len(out.rejected))
        metrics.LATE_TRANSACTIONS.inc(out.late_transactions)
        for valuation in out.live[-1:]:
            metrics.EMIT_DELAY.observe(max(0, now - valuation.window_end_ms) / 1000)
        return [out]
