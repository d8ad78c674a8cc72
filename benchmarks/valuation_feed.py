"""The valuation benchmark's run: its parameters and shared state, the
paced tick source, the transaction input and the sinks that time emissions
(``benchmarks.valuation_bench`` measures and reports; see its docstring).
"""

from __future__ import annotations

import random
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.portfolio_sim import PortfolioSimConfig, PortfolioSimulator
from connectors.simulator import symbol_names
from flows.ingest.flow import wall_clock_ms
from flows.ingest.records import SourcedTick
from flows.valuation.flow import ValuationSinks
from schemas.envelope import RawBatch, RawRecord
from schemas.fast import TickRow
from schemas.topics import TOPICS

WINDOW_MS = 1_000
TICK_TOPIC = TOPICS["ticks"].default_name
TXN_TOPIC = TOPICS["transactions"].default_name
TICK_PARTITIONS = TOPICS["ticks"].partitions
TXN_PARTITIONS = TOPICS["transactions"].partitions
BATCH = 1_000
POLL_MS = 5
STEPS = (-3, -2, -1, 0, 1, 2, 3)
CYCLE = 64  # prices per symbol, repeated


@dataclass(frozen=True)
class Params:
    stage: str  # "pipeline" or "valuation"
    portfolios: int
    positions: int
    symbols: int
    rate: int
    seconds: float
    warmup: float
    lateness_ms: int
    epoch_s: float
    seed: int


@dataclass
class Run:
    """Shared by the sources and sinks of one run (one worker thread)."""

    params: Params
    txns: int = 0
    applied: int = 0
    start_ms: int = 0  # event (= system) time of the first timed tick
    end_ms: int = 0
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    wall_start: float = 0.0  # perf_counter when the first / last slot went out
    wall_end: float = 0.0
    ticks: int = 0
    shift_ms: int = 0  # the run's clock = system time + shift (see _TickPartition)
    event_start_ms: int = 0
    slots: list[tuple[int, list[Any]]] = field(default_factory=list)
    ticks_mb: float = 0.0  # resident memory the pre-made ticks took
    emitted: list[tuple[int, int]] = field(default_factory=list)  # (window end, sys ms)
    valuation_bytes: int = 0
    stages: dict[str, float] = field(default_factory=dict)  # label -> CPU s, live
    stages_at_start: dict[str, float] = field(default_factory=dict)
    stages_at_end: dict[str, float] = field(default_factory=dict)

    def clock(self) -> int:
        return wall_clock_ms() + self.shift_ms

    def ready(self) -> bool:
        """Setup done: every transaction applied, the first valuations out."""
        return self.applied >= self.txns and len(self.emitted) >= self.params.portfolios


# -- inputs --------------------------------------------------------------------


def transaction_batches(run: Run, opening_ms: int) -> list[RawBatch]:
    p = run.params
    sim = PortfolioSimulator(
        PortfolioSimConfig(p.portfolios, p.symbols, p.positions, seed=p.seed, start_ms=opening_ms)
    )
    rng = random.Random(p.seed)
    marks = {s: rng.uniform(20, 500) for s in sim.symbols}
    parts: dict[int, list[RawRecord]] = defaultdict(list)
    for pid, raw in sim.opening(marks):
        records = parts[zlib.crc32(pid.encode()) % TXN_PARTITIONS]
        # A copy: orjson's result keeps its whole initial buffer (~2 KiB).
        records.append(RawRecord(len(records), pid.encode(), bytes(memoryview(raw))))
    run.txns = sum(len(r) for r in parts.values())
    return [
        RawBatch(TXN_TOPIC, partition, records[i : i + BATCH])
        for partition, records in sorted(parts.items())
        for i in range(0, len(records), BATCH)
    ]


def make_ticks(params: Params, event_start_ms: int) -> list[tuple[int, list[Any]]]:
    """Every timed tick, made before the flow runs: ``(due offset ms,
    items)`` per ``POLL_MS`` slot, one item per partition (JSON ``RawBatch``
    for the pipeline, ``(price shard, [SourcedTick])`` for the valuation
    steps). Tick i is at ``event_start_ms + i / rate``; symbols stride so no
    symbol repeats within a ms; prices walk randomly per symbol."""
    rng = random.Random(params.seed + 1)
    names = symbol_names(params.symbols)
    raw = params.stage == "pipeline"
    walks: list[list[Any]] = []
    for name in names:
        cents, walk = rng.randint(2_000, 50_000), []
        for _ in range(CYCLE):
            cents = max(100, cents + rng.choice(STEPS))
            price = f"{cents // 100}.{cents % 100:02d}"
            walk.append(f'{{"symbol":"{name}","price":"{price}","ts":'.encode() if raw else
                        Decimal(price))  # fmt: skip
        walks.append(walk)
    total, count, offsets = int(params.rate * params.seconds), len(names), [0] * TICK_PARTITIONS
    slots: list[tuple[int, list[Any]]] = []
    per_slot = params.rate * POLL_MS // 1000
    for first in range(0, total, per_slot):
        parts: list[list[Any]] = [[] for _ in range(TICK_PARTITIONS)]
        for i in range(first, min(total, first + per_slot)):
            s = (i * 7) % count
            ts = event_start_ms + i * 1000 // params.rate
            step, partition = walks[s][(i // count) % CYCLE], s % TICK_PARTITIONS
            if raw:
                payload = step + b"%d" % ts + b',"provider":"alpha"}'
                parts[partition].append(RawRecord(offsets[partition], None, payload))
                offsets[partition] += 1
            else:
                tick = TickRow(names[s], step, ts, "alpha", None, "USD", None)
                parts[partition].append(SourcedTick(tick, TICK_TOPIC, partition, 0, b""))
        items = [
            RawBatch(TICK_TOPIC, n, records) if raw else (f"{TICK_TOPIC}#{n}", records)
            for n, records in enumerate(parts)
            if records
        ]
        slots.append(((first * 1000) // params.rate, items))
    return slots


def setup_ticks(params: Params, ts: int) -> list[Any]:
    """One tick per symbol at ``ts``: prices and a watermark for the setup."""
    names = symbol_names(params.symbols)
    if params.stage == "pipeline":
        return [
            RawBatch(TICK_TOPIC, n, [
                RawRecord(0, None, f'{{"symbol":"{s}","price":"100","ts":{ts},'
                                   f'"provider":"alpha"}}'.encode())
                for s in names[n::TICK_PARTITIONS]
            ])
            for n in range(TICK_PARTITIONS)
        ]  # fmt: skip
    ticks = [
        SourcedTick(TickRow(s, Decimal(100), ts, "alpha", None, "USD", None), TICK_TOPIC, 0, 0, b"")
        for s in names
    ]
    return [(f"{TICK_TOPIC}#{n}", ticks[n::TICK_PARTITIONS]) for n in range(TICK_PARTITIONS)]


class _TickPartition(StatelessSourcePartition[Any]):
    """Setup ticks, then (once ``run.ready()``) the pre-made slots as they
    fall due by the run's clock; then a drain; then EOF."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.setup_sent = False
        self.next_slot = 0
        self.drain_until_ms = 0

    def next_batch(self) -> list[Any]:
        run = self.run
        now = run.clock()
        if not self.setup_sent:
            self.setup_sent = True
            return setup_ticks(run.params, now)
        if not run.start_ms:
            if not run.ready():
                return []
            # The clock jumps to the ticks' event time: from here on, event
            # time = the run's clock, so a window end is comparable to it.
            run.shift_ms += run.event_start_ms - now
            run.start_ms, run.cpu_start = run.event_start_ms, time.process_time()
            run.wall_start = time.perf_counter()
            run.end_ms = run.start_ms + int(run.params.seconds * 1000)
            run.stages_at_start = dict(run.stages)
            now = run.clock()
        slots, out = run.slots, []
        while self.next_slot < len(slots) and slots[self.next_slot][0] <= now - run.start_ms:
            out.extend(slots[self.next_slot][1])
            self.next_slot += 1
        if self.next_slot == len(slots) and not self.drain_until_ms:
            run.cpu_end, run.wall_end = time.process_time(), time.perf_counter()
            run.stages_at_end = dict(run.stages)
            run.ticks = int(run.params.rate * run.params.seconds)
            # Let the watermark pass the last window, then end the input.
            self.drain_until_ms = now + run.params.lateness_ms + 2 * WINDOW_MS
        if self.drain_until_ms and now >= self.drain_until_ms:
            raise StopIteration
        return out

    def next_awake(self) -> datetime | None:
        return datetime.now(UTC) + timedelta(milliseconds=POLL_MS)


@dataclass
class TickSource(DynamicSource[Any]):
    run: Run

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TickPartition:
        return _TickPartition(self.run)


# -- outputs -------------------------------------------------------------------


class _Partition(StatelessSinkPartition[Any]):
    def __init__(self, write: Callable[[list[Any]], None]) -> None:
        self._write = write

    def write_batch(self, items: list[Any]) -> None:
        self._write(items)


@dataclass
class CallbackSink(DynamicSink[Any]):
    write: Callable[[list[Any]], None]

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(self.write)


def valuation_sinks(run: Run) -> ValuationSinks:
    def on_valuations(items: list[list[Any]]) -> None:
        now = run.clock()
        for records in items:
            run.emitted.extend((r.window_end_ms, now) for r in records)

    def on_messages(items: list[list[tuple[str, bytes]]]) -> None:
        run.valuation_bytes += sum(len(v) for batch in items for _, v in batch)

    def on_applied(items: list[list[Any]]) -> None:
        run.applied += sum(len(batch) for batch in items)

    return ValuationSinks(
        valuation_topic=CallbackSink(on_messages),
        valuation_cache=CallbackSink(on_valuations),
        ledger_store=CallbackSink(on_applied),
    )
