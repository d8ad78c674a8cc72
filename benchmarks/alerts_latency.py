"""Tick-to-alert latency of the price alert step, under Bytewax, at a paced rate.

A one-worker dataflow with the pipeline's own alert step (``PriceAlertLogic``
behind ``op.stateful_batch``, one price shard) between a paced tick source
and an alert sink. The rules go in first (with an end marker, as from the
rules topic); a sentinel rule's alert tells the tick source that they are
loaded, and only then does the clock start. Tick ``i`` is *published* at
start + i / rate; every 5 ms the source emits the ticks that fell due, at
most 2,000 (as the Kafka source hands over at most that many per poll), so
a shard that keeps up sees ~250-tick batches at 50,000 ticks/s, and one
that falls behind sees 2,000-tick batches while its backlog (and latency)
grows. Achieved ticks/s = ticks / time until the step finished the last.

Latency per alert = when the sink finished writing the batch holding it -
when the tick that crossed was published. With ``--pg-dsn`` the sink is the
Postgres alert store (``write_alerts``, one transaction per Bytewax batch,
the database emptied first); without it, the sink maps each alert to its
store row and stops there. Only alerts caused by a tick are timed
(``feed_stale`` is driven by the clock).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

from benchmarks.stats import percentile
from flows.alerts.stream import PriceAlertLogic, PriceAlerts, RuleChange, rules_end
from flows.ingest.records import SourcedTick
from schemas.alerts import Alert, AlertRule, alert_row, parse_rule
from schemas.common import datetime_to_ms
from schemas.fast import TickRow
from sinks.postgres.alerts import write_alerts
from sinks.postgres.migrate import apply_migrations, ensure_database

SHARD = "ticks#0"
SLOT_S = 0.005
MAX_BATCH = 2_000  # what the Kafka source hands over per poll (connectors.kafka.source)
READY = "READY"  # the sentinel's symbol


@dataclass
class Run:
    """What the source and the sink share (one process, one worker)."""

    rate: int
    ticks: list[SourcedTick]
    ready: bool = False
    start: float = 0.0  # perf_counter when tick 0 is published
    cpu_start: float = 0.0  # process CPU time then
    cpu_end: float = 0.0  # ... when the last alert batch was written (not the final snapshot)
    fed_until: float = 0.0  # when the last tick was handed to the flow
    done_at: float = 0.0  # when the alert step last finished a batch
    latencies: list[float] = field(default_factory=list)
    snapshots: list[float] = field(default_factory=list)  # CPU s of each snapshot of the step
    sink_s: float = 0.0
    alerts: int = 0
    batches: int = 0
    largest_batch: int = 0


class _PacedPartition(StatefulSourcePartition[Any, None]):
    def __init__(self, run: Run, priming: list[SourcedTick]) -> None:
        self.run = run
        self.next = 0
        self.behind = False
        self.priming: list[SourcedTick] | None = priming

    def next_batch(self) -> list[Any]:
        run = self.run
        if not run.ready:
            if self.priming is None:
                return []
            # The priming prices, then one for the sentinel: its alert comes
            # once the rules are in and the priming alerts are out.
            tick = TickRow(READY, Decimal(1), 1, "bench", None, "USD", None)
            batch = [*self.priming, SourcedTick(tick, "ticks", 0, -1, b"")]
            self.priming = None
            return [(SHARD, ("prices", batch))]
        if not run.start:
            run.start, run.cpu_start = time.perf_counter(), time.process_time()
        if self.next >= len(run.ticks):
            raise StopIteration
        due = min(len(run.ticks), int((time.perf_counter() - run.start) * run.rate) + 1)
        self.behind = due > self.next + MAX_BATCH
        due = min(due, self.next + MAX_BATCH)
        if due <= self.next:
            return []
        batch = run.ticks[self.next : due]
        self.next = due
        run.fed_until = time.perf_counter()
        run.batches += 1
        run.largest_batch = max(run.largest_batch, len(batch))
        return [(SHARD, ("prices", batch))]

    def next_awake(self) -> datetime | None:
        if self.behind:  # more is due already: poll again at once
            return None
        return datetime.now(UTC) + timedelta(seconds=SLOT_S)

    def snapshot(self) -> None:
        return None


class PacedTicks(FixedPartitionedSource[Any, None]):
    def __init__(self, run: Run, priming: list[SourcedTick]) -> None:
        self.run = run
        self.priming = priming

    def list_parts(self) -> list[str]:
        return ["0"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _PacedPartition:
        return _PacedPartition(self.run, self.priming)


class _TimedLogic(PriceAlertLogic):
    """The pipeline's price alert step, noting when each batch is done."""

    def __init__(self, state: PriceAlerts | bytes | None, run: Run) -> None:
        super().__init__(state or PriceAlerts(), _wall_ms, rule_partitions=1)
        self.run = run

    def on_batch(self, values: list[Any]) -> tuple[list[list[Alert]], bool]:
        result = super().on_batch(values)
        self.run.done_at = time.perf_counter()
        return result

    def snapshot(self) -> bytes:
        started = time.process_time()
        state = super().snapshot()
        self.run.snapshots.append(time.process_time() - started)
        return state


class _TimedPartition(StatelessSinkPartition[list[Alert]]):
    def __init__(self, run: Run, write: Callable[[list[Alert]], None], index: dict) -> None:
        self.run, self.write, self.index = run, write, index

    def write_batch(self, items: list[list[Alert]]) -> None:
        alerts = [a for batch in items for a in batch]
        run = self.run
        if not run.ready:
            run.ready = any(a.symbol == READY for a in alerts)
            return
        started = time.perf_counter()
        self.write(alerts)
        done = time.perf_counter()
        run.cpu_end = time.process_time()
        run.sink_s += done - started
        run.alerts += len(alerts)
        for a in alerts:
            i = self.index.get((a.symbol, datetime_to_ms(a.triggered_at)))
            if i is not None:
                run.latencies.append(done - (run.start + i / run.rate))


@dataclass(frozen=True)
class TimedSink(DynamicSink[list[Alert]]):
    run: Run
    write: Callable[[list[Alert]], None]
    index: dict

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TimedPartition:
        return _TimedPartition(self.run, self.write, self.index)


def _postgres_writer(dsn: str) -> tuple[Callable[[list[Alert]], None], Callable[[], None]]:
    ensure_database(dsn)
    apply_migrations(dsn)
    conn = psycopg.connect(dsn)
    conn.execute("TRUNCATE alerts")
    conn.commit()

    def write(alerts: list[Alert]) -> None:
        with conn.transaction(), conn.cursor() as cur:
            write_alerts(cur, alerts)

    return write, conn.close


def _rows_only(alerts: list[Alert]) -> None:
    for alert in alerts:
        alert_row(alert)


def _ticks(prices: list[tuple[str, Decimal, int]]) -> list[SourcedTick]:
    return [
        SourcedTick(TickRow(s, p, ts, "bench", None, "USD", None), "ticks", 0, i, b"")
        for i, (s, p, ts) in enumerate(prices)
    ]


def run_paced(
    rules: list[AlertRule],
    priming: list[tuple[str, Decimal, int]],
    prices: list[tuple[str, Decimal, int]],
    rate: int,
    pg_dsn: str | None,
) -> list[tuple[str, str]]:
    """``priming`` goes in with the rules, before the clock starts."""
    ticks = _ticks(prices)
    index = {(s, ts): i for i, (s, _, ts) in enumerate(prices)}
    run = Run(rate, ticks)
    write, close = _postgres_writer(pg_dsn) if pg_dsn else (_rows_only, lambda: None)
    sentinel = parse_rule(
        {"rule_id": "ready", "user_id": "bench", "kind": "price_above", "threshold": "0.5"}
        | {"symbol": READY}
    )
    changes: list[RuleChange] = [(r.rule_id, r) for r in [*rules, sentinel]]
    flow = Dataflow("alerts_latency")
    rule_in = op.input("rules", flow, TestingSource([(SHARD, ("rules", [*changes, rules_end(0)]))]))
    tick_in = op.input("ticks", flow, PacedTicks(run, _ticks(priming)))
    alerts = op.stateful_batch(
        "price_alerts",
        op.merge("alert_in", rule_in, tick_in),
        lambda s: _TimedLogic(s, run),
    )
    op.output("alert_store", op.key_rm("unkeyed", alerts), TimedSink(run, write, index))
    try:
        run_main(flow)
    finally:
        close()
    return _report(run, len(prices), rate, pg_dsn, run.cpu_end - run.cpu_start)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _report(
    run: Run, ticks: int, rate: int, pg_dsn: str | None, cpu_s: float
) -> list[tuple[str, str]]:
    fed_s = run.fed_until - run.start
    done_s = run.done_at - run.start  # the last tick evaluated
    lat = sorted(run.latencies)

    def pct(q: float) -> str:
        return f"{percentile(lat, q) * 1000:,.1f}" if lat else "n/a"

    sink = "Postgres `alerts` (one transaction per batch)" if pg_dsn else "row mapping only"
    kept_up = done_s <= ticks / rate + 0.5
    return [
        ("offered rate", f"{rate:,} ticks/s for {ticks / rate:.1f} s ({ticks:,} ticks)"),
        (
            "fed / evaluated in",
            f"{fed_s:.2f} / {done_s:.2f} s ({'kept up' if kept_up else 'fell behind'})",
        ),
        ("**achieved ticks/s**", f"**{ticks / done_s:,.0f}**" if done_s > 0 else "n/a"),
        (
            "source batches (mean / largest ticks)",
            f"{ticks / max(1, run.batches):,.0f} / {run.largest_batch:,}",
        ),
        ("alert sink", sink),
        ("alerts out (timed)", f"{run.alerts:,} ({len(lat):,})"),
        ("**tick-to-alert p50 / p99 / max**", f"**{pct(0.5)} / {pct(0.99)} / {pct(1.0)} ms**"),
        ("sink time", f"{run.sink_s:.2f} s"),
        (
            "process CPU, first tick to last alert",
            f"{cpu_s:.1f} s ({cpu_s / ticks * 1e6:.0f} µs/tick)",
        ),
        (
            "step snapshots (one per epoch): CPU each",
            ", ".join(f"{s:.2f}" for s in run.snapshots) + " s",
        ),
        ("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB"),
    ]
