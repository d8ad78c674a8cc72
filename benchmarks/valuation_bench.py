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
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from benchmarks.stats import percentile as pct
from benchmarks.valuation_feed import (
    TXN_PARTITIONS,
    TXN_TOPIC,
    WINDOW_MS,
    Params,
    Run,
    TickSource,
    make_ticks,
    transaction_batches,
    valuation_sinks,
)
from connectors.portfolio_sim import PortfolioSimConfig, PortfolioSimulator
from flows.ingest.flow import IngestConfig, IngestSinks, wall_clock_ms
from flows.pipeline import PipelineConfig, PipelineSinks, PipelineSources, build_flow
from flows.portfolio import PortfolioState, value
from flows.portfolio.fast_valuation import Valuer
from flows.valuation.flow import ValuationConfig, add_valuation
from folio.runtime import tune_gc
from schemas.transactions import Transaction

TARGET_P99_S = 1.5

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
