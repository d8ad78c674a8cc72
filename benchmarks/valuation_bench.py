"""Streaming valuation under the issue's target load, through the real dataflow.

    python -m benchmarks.valuation_bench [--stage both|pipeline|valuation]
        [--portfolios 10000] [--positions 20] [--symbols 1000] [--rate 50000]
        [--seconds 15] [--warmup 3] [--lateness-ms 500] [--epoch-s 5] [--quick]

Target (issue): 10,000 portfolios x 20 positions over 1,000 symbols, 50,000
ticks/s; every touched portfolio valued in each 1-second live window; the
valuation for window W emitted within 1.5 s after W ends (p99), one worker.

Two stages, each in its own process (so peak RSS is per stage), each under
``bytewax.testing.run_main`` (one worker) with the production defaults for
lateness (500 ms) and snapshots (an epoch every 5 s):

- ``pipeline``: ``flows.pipeline.build_flow`` -- ingest (validate, dedup,
  consolidate, candles) then valuation -- fed raw JSON ticks (``RawBatch``);
- ``valuation``: ``flows.valuation.flow.add_valuation`` alone, fed the
  consolidated ticks directly: what valuation costs without ingest.

Transactions (a deposit and N buys per portfolio, ``connectors.portfolio_sim``)
go in through a ``TestingSource``. Setup first (not timed): one tick per
symbol; the feed starts once every transaction is applied and the first
valuations are out. The feed's ticks are made before the flow starts (their
memory is reported), stamped from an event time an hour ahead; when the feed
starts, the run's clock (system time + a shift, given to the flow and the
sinks) jumps there, so event time = the run's clock and a window's emission
delay is simply clock - window end. A source emits, every 5 ms, the 5-ms
slots that fell due (one batch per partition, ~60 ticks each at 50k/s).

Measured over the live windows ending after the warm-up and at least the
lateness before the end of the feed (closed by the feed's ticks): valuations
per window; latency = system time when a valuation reaches the sink - window
end (p50/p99/max per valuation; per window: its last one);
the process's CPU time over the feed (busy share of one core), the thread
CPU time spent in each step (``TIMED``: the step functions are wrapped in
the child process); peak RSS (``ru_maxrss``). Also, outside the flow:
``Valuer.value`` vs the reference ``value()`` per portfolio, and a CPU
calibration loop with the load average, because the machines are shared.
Prints a markdown table and the command.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import multiprocessing
import os
import random
import resource
import shlex
import statistics
import sys
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

from connectors.portfolio_sim import PortfolioSimConfig, PortfolioSimulator
from connectors.simulator import symbol_names
from flows.ingest.flow import IngestConfig, IngestSinks, wall_clock_ms
from flows.ingest.records import SourcedTick
from flows.pipeline import PipelineConfig, PipelineSinks, PipelineSources, build_flow
from flows.portfolio import PortfolioState, value
from flows.portfolio.fast_valuation import Valuer
from flows.valuation.flow import ValuationConfig, ValuationSinks, add_valuation
from folio.runtime import tune_gc
from schemas.envelope import RawBatch, RawRecord
from schemas.fast import TickRow
from schemas.topics import TOPICS
from schemas.transactions import Transaction

WINDOW_MS = 1_000
TARGET_P99_S = 1.5
TICK_TOPIC = TOPICS["ticks"].default_name
TXN_TOPIC = TOPICS["transactions"].default_name
TICK_PARTITIONS = TOPICS["ticks"].partitions
TXN_PARTITIONS = TOPICS["transactions"].partitions
BATCH = 1_000
POLL_MS = 5
STEPS = (-3, -2, -1, 0, 1, 2, 3)
CYCLE = 64  # prices per symbol, repeated


# (label, module, attribute): thread CPU time spent inside, summed per label.
TIMED = (
    ("ingest: validate", "flows.ingest.flow", "validate_batch"),
    ("ingest: dedup", "flows.ingest.dedup", "Deduplicator.filter"),
    ("ingest: consolidate", "flows.ingest.consolidate", "Consolidator.accept"),
    ("ingest: candles", "flows.ingest.candles", "CandleBuilder.add"),
    ("valuation: coalesce", "flows.valuation.coalesce", "PriceCoalescer.add"),
    ("valuation: shards (ledger + Valuer)", "flows.valuation.shard", "PortfolioShard.advance"),
    ("snapshots (all steps)", "flows.ingest.steps", "DedupLogic.snapshot"),
    ("snapshots (all steps)", "flows.ingest.steps", "ConsolidateLogic.snapshot"),
    ("snapshots (all steps)", "flows.ingest.steps", "CandleLogic.snapshot"),
    ("snapshots (all steps)", "flows.valuation.steps", "CoalesceLogic.snapshot"),
    ("snapshots (all steps)", "flows.valuation.steps", "PortfolioShardLogic.snapshot"),
)


def install_stopwatch(totals: dict[str, float]) -> None:
    """Wrap the ``TIMED`` functions (in this process only) so each call adds
    its thread CPU time to ``totals[label]``; a name that no longer exists is
    skipped."""
    for label, module_name, path in TIMED:
        owner: Any = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent, None)
        if owner is None or not callable(getattr(owner, name, None)):
            continue
        totals.setdefault(label, 0.0)
        setattr(owner, name, _timed(getattr(owner, name), label, totals))


def _timed(fn: Callable[..., Any], label: str, totals: dict[str, float]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[label] += time.thread_time() - started

    return timed


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


# -- runs ----------------------------------------------------------------------


def build(run: Run) -> Dataflow:
    txns = TestingSource(transaction_batches(run, wall_clock_ms() - 60_000))
    shards = tuple(f"{TXN_TOPIC}#{i}" for i in range(TXN_PARTITIONS))
    config = ValuationConfig(shards, WINDOW_MS, 60_000, run.params.lateness_ms)
    if run.params.stage == "pipeline":
        return build_flow(
            PipelineSources(TickSource(run), txns),
            PipelineSinks(ingest=IngestSinks(), valuation=valuation_sinks(run)),
            PipelineConfig(ingest=IngestConfig(), valuation=config),
            run.clock,
        )
    flow = Dataflow("valuation-bench")
    prices = op.input("ticks_in", flow, TickSource(run))
    rejects, _ = add_valuation(
        prices, op.input("transactions_in", flow, txns), valuation_sinks(run), config, run.clock
    )
    op.inspect("rejects", rejects, lambda _step, item: print("rejected:", item, file=sys.stderr))
    return flow


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def measure(params: Params) -> dict[str, Any]:
    """One stage, in this process: the figures for its column."""
    run = Run(params)
    # An hour ahead, on a window boundary: the clock jumps there when the feed starts.
    run.event_start_ms = (wall_clock_ms() + 3_600_000) // WINDOW_MS * WINDOW_MS
    before = resident_mb()
    run.slots = make_ticks(params, run.event_start_ms)
    run.ticks_mb = resident_mb() - before
    install_stopwatch(run.stages)
    flow = build(run)
    # The pre-made ticks (~1.5M tuples at the default rate) and transaction
    # records (210k) are the bench's input, not the flow's state: kept out of
    # the cyclic GC, which would otherwise scan them in every full collection
    # (~1 s each, measured). The flow's own state is built later, unfrozen.
    gc.freeze()
    tune_gc()  # as ``folio run`` does
    started = time.perf_counter()
    run_main(flow, epoch_interval=timedelta(seconds=params.epoch_s))
    wall_s = time.perf_counter() - started
    first_end = run.start_ms + int(params.warmup * 1000)
    # Only windows the feed's own ticks close (their end + lateness within
    # the feed). The windows after that close on the quiet-feed timer, whose
    # notify_at is in the run's clock, an hour ahead of the system clock
    # Bytewax schedules by: in this harness they wait for EOF (the drain,
    # ~2.5 s), which a live deployment (run clock = system clock) never does.
    last = run.end_ms - params.lateness_ms
    last_end = last - last % WINDOW_MS
    per_window: dict[int, list[int]] = defaultdict(list)
    for end, at in run.emitted:
        if first_end < end <= last_end:
            per_window[end].append(at)
    delays = [(at - end) / 1000 for end, ats in per_window.items() for at in ats]
    window_delays = [(max(ats) - end) / 1000 for end, ats in per_window.items()]
    counts = [len(ats) for ats in per_window.values()] or [0]
    feed_s = (run.end_ms - run.start_ms) / 1000
    # Over the wall time the feed really took (longer than feed_s when the
    # worker fell behind and emitted due slots late).
    fed_s = max(1e-9, run.wall_end - run.wall_start)
    busy = (run.cpu_end - run.cpu_start) / fed_s
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    spent = {k: (run.stages_at_end.get(k, 0) - v) / fed_s for k, v in run.stages_at_start.items()}
    work = ", ".join(f"{k} {v:.0%}" for k, v in spent.items() if v >= 0.005) or "-"
    return {
        "ticks fed (event time / wall time)": f"{run.ticks:,} in {feed_s:.1f} s / {fed_s:.1f} s"
        f" ({run.ticks / fed_s:,.0f}/s)",
        "CPU busy during the feed (process, one core = 100 %)": f"{busy:.0%}",
        "CPU by step during the feed (share of one core)": work,
        "windows measured": str(len(per_window)),
        "valuations per window, min / median": f"{min(counts):,} / "
        f"{statistics.median(counts):,.0f}",
        "latency per valuation p50 / p99 / max (s)": f"{pct(delays, 0.5):.2f} / "
        f"{pct(delays, 0.99):.2f} / {max(delays, default=float('nan')):.2f}",
        "latency per window (its last valuation) p50 / max (s)": f"{pct(window_delays, 0.5):.2f}"
        f" / {max(window_delays, default=float('nan')):.2f}",
        f"p99 <= {TARGET_P99_S} s": "met" if pct(delays, 0.99) <= TARGET_P99_S else "NOT met",
        "valuation JSON per portfolio": f"{run.valuation_bytes / max(1, len(run.emitted)):,.0f} B",
        "peak RSS (of which pre-made ticks)": f"{peak_mb:,.0f} MB ({run.ticks_mb:,.0f} MB)",
        "wall time (setup + feed + drain)": f"{wall_s:.1f} s",
    }


def _child(params: Params, results: Any) -> None:
    results.put(measure(params))


def valuer_cost(params: Params, sample: int = 300) -> tuple[float, float]:
    """Microseconds per portfolio: (Valuer, reference value()), warm caches,
    a new price for every symbol each round (as in a busy window)."""
    sim = PortfolioSimulator(
        PortfolioSimConfig(sample, params.symbols, params.positions, seed=params.seed)
    )
    states: dict[str, PortfolioState] = {}
    for pid, raw in sim.opening():
        states.setdefault(pid, PortfolioState(pid)).apply(Transaction.model_validate_json(raw))
    rng = random.Random(params.seed)
    valuer = Valuer()

    def timed(fn: Callable[..., Any], rounds: int) -> float:
        best = float("inf")
        for _ in range(rounds):
            prices = {s: Decimal(rng.randint(2_000, 50_000)) / 100 for s in sim.symbols}
            started = time.process_time()
            for state in states.values():
                fn(state, prices, 0, WINDOW_MS, None)
            best = min(best, (time.process_time() - started) / len(states))
        return best * 1e6

    return timed(valuer.value, 7), timed(value, 3)


def calibration_s() -> float:
    """CPU seconds for a 3M-iteration Python loop: how fast this machine
    was for this run (the machines are shared and noisy)."""
    started, total = time.process_time(), 0
    for i in range(3_000_000):
        total += i
    return time.process_time() - started


def report(params: Params, stages: list[str], columns: list[dict[str, Any]], command: str) -> str:
    fast_us, ref_us = valuer_cost(params)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    head = [
        f"{params.portfolios:,} portfolios x {params.positions} positions over "
        f"{params.symbols:,} symbols, {params.rate:,} ticks/s for {params.seconds:g} s "
        f"(first {params.warmup:g} s not measured), lateness {params.lateness_ms} ms, "
        f"epoch {params.epoch_s:g} s, one worker.",
        "",
        "| measure | " + " | ".join(stages) + " |",
        "|---|" + "---|" * len(stages),
    ]
    rows = [f"| {key} | " + " | ".join(c[key] for c in columns) + " |" for key in columns[0]]
    tail = [
        "",
        f"`Valuer.value` {fast_us:.1f} us vs reference `value()` {ref_us:.1f} us per "
        f"{params.positions}-position portfolio (process time, new prices every round).",
        f"Machine: 3M-iteration Python loop {calibration_s():.2f} s CPU; load average {load}.",
        "",
        f"Command: `{command}`",
    ]
    return "\n".join(head + rows + tail)


def parse(argv: list[str]) -> tuple[Params, list[str]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--stage", choices=("both", "pipeline", "valuation"), default="both")
    parser.add_argument("--portfolios", type=int, default=10_000)
    parser.add_argument("--positions", type=int, default=20)
    parser.add_argument("--symbols", type=int, default=1_000)
    parser.add_argument("--rate", type=int, default=50_000, help="ticks per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the timed feed")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds not measured")
    parser.add_argument("--lateness-ms", type=int, default=500)
    parser.add_argument("--epoch-s", type=float, default=5.0, help="Bytewax epoch (snapshots)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="1,000 portfolios, 4 s: < 60 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.portfolios, args.seconds, args.warmup = 1_000, 4.0, 1.0
    stages = ["pipeline", "valuation"] if args.stage == "both" else [args.stage]
    params = Params(
        stages[0], args.portfolios, args.positions, args.symbols, args.rate, args.seconds,
        args.warmup, args.lateness_ms, args.epoch_s, args.seed,
    )  # fmt: skip
    return params, stages


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    params, stages = parse(argv)
    context = multiprocessing.get_context("spawn")  # a fresh process: its own peak RSS
    columns = []
    for stage in stages:
        results = context.Queue()
        child = context.Process(target=_child, args=(replace_stage(params, stage), results))
        child.start()
        columns.append(results.get())
        child.join()
    command = shlex.join(["python", "-m", "benchmarks.valuation_bench", *argv])
    print(report(params, stages, columns, command))


def replace_stage(params: Params, stage: str) -> Params:
    return Params(stage, *(getattr(params, f) for f in list(Params.__dataclass_fields__)[1:]))


if __name__ == "__main__":
    main()
