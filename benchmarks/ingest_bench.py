"""End-to-end ingest throughput: Kafka in -> prices, candles, ClickHouse rows out.

    python -m benchmarks.ingest_bench [--ticks N] [--symbols S] [--mode live|replay|both]
                                      [--quick] [--batch-size B] [--profile]
                                      [--without clickhouse,kafka,redis]
                                      [--recovery] [--epoch-s 5]

Starts its own Tansu broker on a free port, creates the topics, produces a
fixed, seeded set of simulated ticks into ``market.ticks`` (not timed) with
a few faults (0.1 % duplicates, 0.1 % bad values, 1 % out of order) so the
dedup and dead-letter paths run. "replay" stamps the ticks years in the past
(2021), "live" ends them at the current time. Then, in a fresh child process
per mode (chDB allows one owner per process, and peak RSS is per process),
it runs the ingest flow with every real sink -- Redis prices (a random key
prefix, deleted afterwards), Kafka prices/candles/DLQ, ClickHouse ticks and
candles in a temporary chDB directory -- through
``bytewax.run.cli_main(flow, workers_per_process=1)`` with ``tail=False``,
and times it from start to exit. ``--profile`` repeats each run under
cProfile (the single worker runs on the main thread) for time per stage;
``--without`` leaves sinks out to measure what each costs (one must stay);
``--recovery`` adds snapshots to disk every ``--epoch-s`` (folio run: 5 s).
Prints a markdown table and the exact command. Target: >= 100,000 ticks/s.

The machines are shared: wall time swings with their load, so the table also
gives the raw consume + parse rate measured in the same run (the reference)
and, when ``perf`` exists, user-space instructions per tick of the flow
process (all its threads), which load does not inflate.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import os
import pstats
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import psutil
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from connectors.kafka.admin import ensure_topics
from connectors.kafka.producer import ReliableProducer
from connectors.simulator import Faults, MarketSimulator, SimConfig
from deploy.processes import free_port, stop
from deploy.tansu import start_tansu

TARGET_TICKS_PER_S = 100_000
REPLAY_START_MS = 1_609_459_200_000  # 2021-01-01T00:00:00Z
REDIS_URL = "redis://127.0.0.1:6379/0"
TOPICS = {"ticks": 4, "prices": 4, "candles": 4, "dlq": 1}
FAULTS = Faults(duplicate_rate=0.001, out_of_order_rate=0.01, bad_rate=0.001)
# (label, file name suffix, function name): cumulative time per stage.
STAGES = (
    ("kafka source", "connectors/kafka/source.py", "next_batch"),
    ("validate", "flows/ingest/validate.py", "validate_batch"),
    ("dedup", "flows/ingest/dedup.py", "filter"),
    ("consolidate", "flows/ingest/consolidate.py", "accept"),
    ("candles", "flows/ingest/candles.py", "add"),
    ("price rows (cache)", "flows/ingest/encode.py", "latest_prices"),
    ("encode prices", "flows/ingest/encode.py", "price_messages"),
    ("sink redis", "sinks/redis/prices.py", "write_batch"),
    ("sink kafka (3 topics)", "sinks/kafka.py", "write_batch"),
    ("sink clickhouse ticks", "sinks/clickhouse/stream.py", "_ticks"),
    ("sink clickhouse candles", "sinks/clickhouse/stream.py", "_candles"),
)


@dataclass(frozen=True)
class Run:
    bootstrap: str
    topics: dict[str, str]
    mode: str
    batch_size: int
    redis_prefix: str
    profile: bool
    without: frozenset[str]  # sinks left out to measure their share: clickhouse, redis, kafka
    recovery_dir: str | None  # snapshots on disk every epoch, as `folio run --recovery-dir`
    epoch_s: float


def produce(bootstrap: str, topic: str, ticks: int, symbols: int, start_ms: int) -> int:
    """Produce ``ticks`` simulated instants (plus duplicates); returns records sent."""
    sim = MarketSimulator(
        SimConfig(symbols=symbols, ticks_per_s=1_000.0, start_ms=start_ms, faults=FAULTS)
    )
    producer = ReliableProducer({"bootstrap.servers": bootstrap})
    sent = producer.produce_many(topic, sim.records(ticks))
    producer.flush()
    return sent


def read_topic(bootstrap: str, topic: str, parse: bool = False) -> tuple[int, float]:
    """Read ``topic`` from the beginning to end-of-partition (``orjson.loads``
    on every value if ``parse``); returns (messages, seconds). ``parse`` is
    the reference: a bare assign() consume plus JSON parse."""
    config = {"bootstrap.servers": bootstrap, "group.id": "folio-bench"}
    consumer = Consumer({**config, "enable.partition.eof": "true", "enable.auto.commit": "false"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        done: set[int | None] = set()
        count = 0
        started = time.perf_counter()
        while len(done) < len(parts):
            if time.perf_counter() - started > 120:
                raise TimeoutError(f"did not reach the end of {topic}")
            for msg in consumer.consume(10_000, 0.2):
                err = msg.error()
                if err is None:
                    count += 1
                    if parse:
                        orjson.loads(msg.value() or b"null")
                elif err.code() == KafkaError._PARTITION_EOF:
                    done.add(msg.partition())
                else:
                    raise RuntimeError(err.str())
        return count, time.perf_counter() - started
    finally:
        consumer.close()


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_perf() -> subprocess.Popen[str] | None:
    """``perf stat`` on this process and its threads: user-space instructions
    do not grow with machine load as time does. None without ``perf``."""
    if shutil.which("perf") is None:
        return None
    argv = ["perf", "stat", "-x,", "-e", "instructions:u", "-p", str(os.getpid())]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # attached before the flow starts
    return proc


def stop_perf(proc: subprocess.Popen[str] | None) -> float | None:
    if proc is None:
        return None
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    counts = [line.split(",")[0] for line in err.splitlines() if ",instructions" in line]
    return float(counts[0]) if counts and counts[0].isdigit() else None


def run_flow(run: Run, chdb_dir: str) -> dict[str, Any]:
    """In a child process: the ingest flow with every real sink, timed."""
    from folio.runtime import tune_gc

    tune_gc()  # as ``folio run`` does
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.run import cli_main

    from connectors.kafka.source import KafkaBatchSource
    from flows.ingest.flow import IngestConfig, IngestSinks, build_ingest_flow
    from sinks.clickhouse.client import open_clickhouse
    from sinks.clickhouse.schema import apply_schema
    from sinks.clickhouse.stream import ClickHouseCandleSink, ClickHouseTickSink
    from sinks.kafka import KafkaTopicSink
    from sinks.kafka_epoch import KafkaEpochSink
    from sinks.redis.prices import redis_price_store

    kafka = {"bootstrap.servers": run.bootstrap}
    clickhouse = open_clickhouse(f"chdb://{chdb_dir}", "folio_bench")
    apply_schema(clickhouse)
    use_ch, use_kafka = "clickhouse" not in run.without, "kafka" not in run.without
    use_redis = "redis" not in run.without
    sinks = IngestSinks(
        dead_letters=KafkaTopicSink(kafka, run.topics["dlq"]) if use_kafka else None,
        tick_store=ClickHouseTickSink(clickhouse) if use_ch else None,
        price_cache=redis_price_store(REDIS_URL, run.redis_prefix) if use_redis else None,
        price_topic=KafkaEpochSink(kafka, run.topics["prices"]) if use_kafka else None,
        candle_topic=KafkaEpochSink(kafka, run.topics["candles"]) if use_kafka else None,
        candle_store=ClickHouseCandleSink(clickhouse) if use_ch else None,
    )
    source = KafkaBatchSource(kafka, (run.topics["ticks"],), batch_size=run.batch_size, tail=False)
    flow = build_ingest_flow(source, sinks, IngestConfig(flush_candles_at_eof=True))
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    profiler = cProfile.Profile() if run.profile else None
    perf = None if run.profile else start_perf()
    cpu_before = cpu_s()
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    recovery = None
    if run.recovery_dir is not None:
        init_db_dir(Path(run.recovery_dir), 1)
        recovery = RecoveryConfig(run.recovery_dir)
    epoch = timedelta(seconds=run.epoch_s)
    cli_main(flow, workers_per_process=1, epoch_interval=epoch, recovery_config=recovery)
    if profiler is not None:
        profiler.disable()
    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {
        "instructions": stop_perf(perf),
        "elapsed_s": elapsed,
        "cpu_s": cpu_s() - cpu_before,
        "rss_before_mb": rss_before_kb / 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ch_ticks": clickhouse.query_rows(f"SELECT count() FROM {clickhouse.table('ticks')}")[0][0],
        "ch_candles": clickhouse.query_rows(
            f"SELECT count() FROM {clickhouse.table('candles_1m')}"
        )[0][0],
    }
    clickhouse.close()
    if profiler is not None:
        result["stages"] = stage_times(pstats.Stats(profiler), elapsed)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return result


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


def bench_mode(mode: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    port = free_port()
    pid = start_tansu(port, workdir / f"tansu-{mode}.log")
    bootstrap = f"127.0.0.1:{port}"
    topics = {"ticks": "market.ticks", "prices": "market.prices"}
    topics |= {"candles": "market.candles.1m", "dlq": "pipeline.dlq"}
    prefix = f"folio_bench_{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        ensure_topics({"bootstrap.servers": bootstrap}, {topics[k]: n for k, n in TOPICS.items()})
        now_ms = time.time_ns() // 1_000_000
        span_ms = args.ticks  # 1,000 ticks/s of event time
        start_ms = REPLAY_START_MS if mode == "replay" else now_ms - span_ms
        started = time.perf_counter()
        records = produce(bootstrap, topics["ticks"], args.ticks, args.symbols, start_ms)
        produce_s = time.perf_counter() - started
        parsed, seconds = read_topic(bootstrap, topics["ticks"], parse=True)
        raw_rate = parsed / seconds
        results: dict[str, Any] = {"records": records, "produce_s": produce_s, "raw_rate": raw_rate}
        runs = [False, True] if args.profile else [False]
        for profile in runs:
            without = frozenset(args.without.split(",")) - {""}
            chdb_dir = tempfile.mkdtemp(prefix="chdb-", dir=workdir)
            recovery = tempfile.mkdtemp(prefix="recovery-", dir=workdir) if args.recovery else None
            run = Run(
                bootstrap, topics, mode, args.batch_size, prefix, profile, without, recovery,
                args.epoch_s,
            )  # fmt: skip
            broker_before = sum(psutil.Process(pid).cpu_times()[:2])
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                out = pool.apply(run_flow, (run, chdb_dir))
            out["broker_cpu_s"] = sum(psutil.Process(pid).cpu_times()[:2]) - broker_before
            if profile:
                results["stages"] = out["stages"]
            else:
                results |= out
                results["prices_topic"] = read_topic(bootstrap, topics["prices"])[0]
                results["candles_topic"] = read_topic(bootstrap, topics["candles"])[0]
                results["dlq_topic"] = read_topic(bootstrap, topics["dlq"])[0]
                results["redis_prices"] = sum(1 for _ in client.scan_iter(f"{prefix}:price:*"))
        return results
    finally:
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
        stop(pid, "tansu")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=None, help="default 1,000,000")
    parser.add_argument("--symbols", type=int, default=1_000)
    parser.add_argument("--mode", choices=("live", "replay", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="200,000 ticks")
    parser.add_argument("--batch-size", type=int, default=2_000, help="Kafka messages per poll")
    parser.add_argument("--profile", action="store_true", help="add a cProfile run per mode")
    parser.add_argument("--recovery", action="store_true", help="snapshot to a recovery dir")
    parser.add_argument("--epoch-s", type=float, default=5.0, help="as folio run's default")
    parser.add_argument(
        "--without", default="", help="leave sinks out to see their cost: clickhouse,redis,kafka"
    )
    args = parser.parse_args()
    if args.ticks is None:
        args.ticks = 200_000 if args.quick else 1_000_000
    modes = ["replay", "live"] if args.mode == "both" else [args.mode]
    with tempfile.TemporaryDirectory(prefix="folio-ingest-bench-") as tmp:
        results = {mode: bench_mode(mode, args, Path(tmp)) for mode in modes}
    report(args, results)


if __name__ == "__main__":
    main()
