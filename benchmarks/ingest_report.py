"""The ingest benchmark's report: the markdown table, and the time per stage
of a ``--profile`` run (split out of ``benchmarks.ingest_bench``)."""

from __future__ import annotations

import argparse
import pstats
import shlex
import sys
from typing import Any

TARGET_TICKS_PER_S = 100_000
# (label, file name suffix, function name): cumulative time per stage, on
# the worker's thread. The Redis and ClickHouse sinks write on their own
# threads (sinks.background), which cProfile does not see: the worker's
# share of them is the submit and the wait at each epoch's end.
STAGES = (
    ("kafka source", "connectors/kafka/source.py", "next_batch"),
    ("validate", "flows/ingest/validate.py", "validate_batch"),
    ("dedup", "flows/ingest/dedup.py", "filter"),
    ("consolidate", "flows/ingest/consolidate.py", "accept"),
    ("candles", "flows/ingest/candles.py", "add"),
    ("price rows (cache)", "flows/ingest/encode.py", "latest_prices"),
    ("encode prices", "flows/ingest/encode.py", "price_messages"),
    ("sink kafka (dead letters)", "sinks/kafka.py", "write_batch"),
    ("sink kafka (prices, candles)", "sinks/kafka_epoch.py", "write_batch"),
    ("sink submits (redis, clickhouse)", "sinks/background.py", "write_batch"),
    ("epoch ends (await writes)", "sinks/background.py", "snapshot"),
    ("epoch ends (await kafka)", "sinks/kafka_epoch.py", "snapshot"),
)


def stage_times(stats: pstats.Stats, elapsed: float) -> dict[str, float]:
    """Cumulative seconds per stage (outermost calls only, so no double counting)."""
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    out = {label: 0.0 for label, _, _ in STAGES}
    for (filename, _, name), (_, _, _, cumulative, _) in table.items():
        for label, suffix, func in STAGES:
            if name == func and filename.endswith(suffix):
                out[label] += cumulative
    out["bytewax + rest"] = elapsed - sum(out.values())
    return out


def per_tick_instructions(r: dict[str, Any]) -> str:
    return "n/a" if r["instructions"] is None else f"{r['instructions'] / r['records']:,.0f}"


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    rows = [
        ("records consumed", lambda r: f"{r['records']:,}"),
        ("produce (not timed), s", lambda r: f"{r['produce_s']:.1f}"),
        ("flow wall time, s", lambda r: f"{r['elapsed_s']:.2f}"),
        ("**ticks/s end to end**", lambda r: f"**{r['records'] / r['elapsed_s']:,.0f}**"),
        ("flow CPU s (all threads)", lambda r: f"{r['cpu_s']:.2f}"),
        ("ticks per CPU-second", lambda r: f"{r['records'] / r['cpu_s']:,.0f}"),
        ("broker (Tansu) CPU s meanwhile", lambda r: f"{r['broker_cpu_s']:.2f}"),
        ("reference: raw consume+parse msg/s", lambda r: f"{r['raw_rate']:,.0f}"),
        ("flow / reference", lambda r: f"{r['records'] / r['elapsed_s'] / r['raw_rate']:.2f}"),
        ("user instructions per tick (perf)", per_tick_instructions),
        ("ClickHouse tick rows", lambda r: f"{r['ch_ticks']:,}"),
        ("ClickHouse candle rows", lambda r: f"{r['ch_candles']:,}"),
        ("market.prices messages", lambda r: f"{r['prices_topic']:,}"),
        ("market.candles.1m messages", lambda r: f"{r['candles_topic']:,}"),
        ("pipeline.dlq messages", lambda r: f"{r['dlq_topic']:,}"),
        ("Redis price keys", lambda r: f"{r['redis_prices']:,}"),
        ("RSS before flow, MB", lambda r: f"{r['rss_before_mb']:.0f}"),
        ("peak RSS, MB", lambda r: f"{r['peak_rss_mb']:.0f}"),
    ]
    modes = list(results)
    print("\n| metric | " + " | ".join(modes) + " |")
    print("|---|" + "---:|" * len(modes))
    for label, cell in rows:
        print(f"| {label} | " + " | ".join(cell(results[m]) for m in modes) + " |")
    if all("stages" in r for r in results.values()):
        print("\nTime per stage under cProfile (s; profiling inflates Python-heavy stages):\n")
        print("| stage | " + " | ".join(modes) + " |")
        print("|---|" + "---:|" * len(modes))
        for stage in results[modes[0]]["stages"]:
            cells = " | ".join(f"{results[m]['stages'][stage]:.2f}" for m in modes)
            print(f"| {stage} | {cells} |")
    rates = [r["records"] / r["elapsed_s"] for r in results.values()]
    verdict = "meets" if min(rates) >= TARGET_TICKS_PER_S else "MISSES"
    print(f"\nTarget {TARGET_TICKS_PER_S:,} ticks/s: {verdict} (slowest mode {min(rates):,.0f}).")
    print("Command: python -m benchmarks.ingest_bench " + shlex.join(sys.argv[1:]))
