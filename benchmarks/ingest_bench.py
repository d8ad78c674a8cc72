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
import shutil
import signal
import subprocess
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

from benchmarks.ingest_report import report, stage_times
from connectors.kafka.admin import ensure_topics
from connectors.kafka.producer import ReliableProducer
from connectors.simulator import Faults, MarketSimulator, SimConfig
from deploy.processes import free_port, stop
from deploy.tansu import start_tansu

REPLAY_START_MS = 1_609_459_200_000  # 2021-01-01T00:00:00Z
REDIS_URL = "redis://127.0.0.1:6379/0"
TOPICS = {"ticks": 4, "prices": 4, "candles": 4, "dlq": 1}
FAULTS = Faults(duplicate_rate=0.001, out_of_order_rate=0.01, bad_rate=0.001)


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
