"""Bytewax wrappers around the pure ingest logic: one call per batch.

Snapshots are independent copies (Bytewax may serialise them later, after
more batches changed the live state), made by each state's ``snapshot()``,
which copies containers but shares immutable keys and rows: a ``deepcopy``
of a replay-sized dedup state took seconds per epoch."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bytewax.operators import StatefulBatchLogic

from flows.ingest import metrics
from flows.ingest.candles import CandleBuilder
from flows.ingest.consolidate import Consolidator
from flows.ingest.dedup import Deduplicator, DedupSnapshot
from flows.ingest.encode import late_rejection, stale_rejection
from flows.ingest.quiet import restarted
from flows.ingest.records import CandleRow, Rejection, SourcedTick

Clock = Callable[[], int]  # epoch ms

_RETAIN = False


# ("fresh", [SourcedTick]) or ("stale", [Rejection])
DedupOut = tuple[str, list[Any]]


class DedupLogic(StatefulBatchLogic[list[SourcedTick], DedupOut, Deduplicator | DedupSnapshot]):
    def __init__(self, state: Deduplicator) -> None:
        self.state = state

    def on_batch(self, values: list[list[SourcedTick]]) -> tuple[list[DedupOut], bool]:
        out: list[DedupOut] = []
        horizon = self.state.horizon_ms
        for ticks in values:
            fresh, repeats, stale = self.state.filter(ticks)
            if repeats:
                metrics.DUPLICATES.inc(repeats)
            if fresh or not ticks:  # an empty list is an end marker: pass it on
                out.append(("fresh", fresh))
            if stale:
                metrics.LATE.inc(len(stale))
                out.append(("stale", [stale_rejection(t, horizon) for t in stale]))
        return out, _RETAIN

    def snapshot(self) -> DedupSnapshot:
        return self.state.snapshot()


class ConsolidateLogic(StatefulBatchLogic[list[SourcedTick], list[SourcedTick], Consolidator]):
    def __init__(self, state: Consolidator) -> None:
        self.state = state

    def on_batch(self, values: list[list[SourcedTick]]) -> tuple[list[list[SourcedTick]], bool]:
        out = []
        for ticks in values:
            chosen, switches, held_back = self.state.accept(ticks)
            for switch in switches:
                if switch.kind != "initial":
                    metrics.SWITCHES.labels(switch.kind, switch.to_provider).inc()
            if held_back:
                metrics.HELD_BACK.inc(held_back)
            if chosen:
                metrics.PRICES_OUT.inc(len(chosen))
            if chosen or not ticks:  # an empty list is an end marker: pass it on
                out.append(chosen)
        return out, _RETAIN

    def snapshot(self) -> Consolidator:
        return self.state.snapshot()


CandleOut = tuple[str, list[Any]]  # ("candles", [CandleRow]) or ("late", [Rejection])


class CandleLogic(StatefulBatchLogic[list[SourcedTick], CandleOut, CandleBuilder]):
    def __init__(self, state: CandleBuilder, clock: Clock, flush_at_eof: bool) -> None:
        self.state = state
        self.clock = clock
        self.flush_at_eof = flush_at_eof
        # Built once per execution: a restored shard's downtime is not a quiet feed.
        state.newest_at_sys_ms = restarted(state.newest_at_sys_ms, clock())

    def on_batch(self, values: list[list[SourcedTick]]) -> tuple[list[CandleOut], bool]:
        now = self.clock()
        candles: list[CandleRow] = []
        late: list[Rejection] = []
        for ticks in values:
            closed, late_ticks = self.state.add(ticks, now)
            candles.extend(closed)
            late.extend(late_rejection(t, until) for t, until in late_ticks)
        if self.state.newest_ms is not None and values and values[0]:
            shard = f"{values[0][0].topic}#{values[0][0].partition}"
            metrics.EVENT_LAG.labels(shard).set(max(0, now - self.state.newest_ms) / 1000)
        return self._emit(candles, late), _RETAIN

    def on_notify(self) -> tuple[list[CandleOut], bool]:
        return self._emit(self.state.close_due(self.clock()), []), _RETAIN

    def on_eof(self) -> tuple[list[CandleOut], bool]:
        if not self.flush_at_eof:
            return [], _RETAIN
        return self._emit(self.state.close_all(), []), _RETAIN

    def notify_at(self) -> datetime | None:
        due = self.state.next_close_sys_ms()
        return None if due is None else datetime.fromtimestamp(due / 1000, tz=UTC)

    def snapshot(self) -> CandleBuilder:
        return self.state.snapshot()

    def _emit(self, candles: list[CandleRow], late: list[Rejection]) -> list[CandleOut]:
        out: list[CandleOut] = []
        if candles:
            metrics.CANDLES_OUT.inc(len(candles))
            out.append(("candles", candles))
        if late:
            metrics.LATE.inc(len(late))
            out.append(("late", late))
        return out
