"""Crash and outage harness: kill -9 the pipeline at random points and take
Postgres and Redis away, then compare every store with a crash-free run.

    python -m benchmarks.chaos_bench [--ticks N] [--txns N] [--kills K] [--outage S]
                                     [--quick] [--seed N]

Starts its own Tansu broker on a free port and publishes a fixed, seeded
input (``benchmarks.chaos_workload``: ticks from two providers with a
failover, duplicates, out-of-order, late and bad ticks; transactions of
every kind; alert rules). Then three runs of ``folio run --exit-at-end
--recovery-dir D --snapshot-interval 0.5`` in subprocesses, each with its
own Postgres database, Redis prefix, chDB directory and output topics:

- ``clean``: once, uninterrupted (the reference);
- ``killed``: SIGKILL at random points ``--kills`` times (mostly
  mid-processing, one in five while it loads its snapshots), restarted
  each time, then run to the end;
- ``outage`` (``--outage S`` > 0): Postgres, then Redis, reachable only
  through a loopback proxy that refuses them for ``S`` seconds each and
  then resets their connections mid-batch.

Every store of ``killed`` and ``outage`` is compared with ``clean``
(``benchmarks.chaos_compare``: all Postgres rows, all Redis keys,
ClickHouse tables with FINAL, distinct Kafka output messages; wall-clock
columns excluded). Prints markdown tables; exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import secrets
import shlex
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.chaos_compare import Snapshot, TableDiff, compare
from benchmarks.chaos_harness import (
    ChaosStats,
    Target,
    drop_target,
    make_target,
    migrate,
    publish_workload,
    run_args,
    run_to_end,
    run_with_kills,
    snapshot_target,
    start_flow,
    wait_for_snapshot,
)
from benchmarks.chaos_workload import Workload
from benchmarks.tcp_proxy import TcpProxy
from connectors.kafka.admin import ensure_topics
from deploy.processes import free_port, stop
from deploy.tansu import start_tansu
from folio.settings import TopicNames
from schemas.topics import TOPICS

STORES = ("postgres", "redis", "clickhouse", "kafka")


@dataclass
class RunReport:
    name: str
    kills: int
    restarts: int
    wall_s: float
    diffs: dict[str, TableDiff]


def _inputs(bootstrap: str, unique: str) -> TopicNames:
    topics = TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().all().items()})
    wanted = {topics.all()[k]: TOPICS[k].partitions for k in ("ticks", "transactions", "rules")}
    ensure_topics({"bootstrap.servers": bootstrap}, wanted)
    return topics


def _outage_run(target: Target, args: list[str], seconds: float) -> tuple[float, int]:
    """Run ``target`` with Postgres and Redis behind proxies; cut each for
    ``seconds`` once the flow is processing, then reset their connections."""
    with TcpProxy(5432) as pg, TcpProxy(6379) as rd:
        dbname = target.pg_dsn.rsplit("/", 1)[1]
        proxied = dataclasses.replace(
            target,
            pg_dsn=f"postgresql://postgres@127.0.0.1:{pg.port}/{dbname}",
            redis_url=f"redis://127.0.0.1:{rd.port}/0",
        )
        started = time.monotonic()
        proc = start_flow(proxied, args)

        def faults() -> None:
            wait_for_snapshot(proxied, proc, 600)  # started and processing
            time.sleep(1.0)
            for proxy in (pg, rd):
                if proc.poll() is not None:
                    return
                proxy.outage(seconds, settle_s=0.5)
                time.sleep(1.5)

        chaos = threading.Thread(target=faults, daemon=True)
        chaos.start()
        code = proc.wait(timeout=3_600)
        chaos.join(timeout=seconds * 2 + 20)
        if code != 0:
            raise RuntimeError(f"outage run exited {code}: {target.log_path.read_text()[-2000:]}")
        return time.monotonic() - started, len(pg.stats.cuts) + len(rd.stats.cuts)


def _store_rows(snap: Snapshot) -> dict[str, int]:
    return {
        store: sum(len(rows) for t, rows in snap.items() if t.startswith(store + "."))
        for store in STORES
    }


def _mismatches(diffs: dict[str, TableDiff], store: str | None = None) -> int:
    return sum(d.mismatches for t, d in diffs.items() if store is None or t.startswith(store + "."))


def _print(reports: list[RunReport], reference: Snapshot, clean_s: float, w: Workload) -> None:
    rows = _store_rows(reference)
    print(f"\n### Chaos: {w.ticks:,} ticks, {w.txns:,} transactions\n")
    print("| run | kills | restarts | wall s | " + " | ".join(f"{s} rows" for s in STORES)
          + " | mismatches |")  # fmt: skip
    print("|---|---:|---:|---:|" + "---:|" * len(STORES) + "---:|")
    print(f"| clean | 0 | 0 | {clean_s:.1f} | " + " | ".join(f"{rows[s]:,}" for s in STORES)
          + " | reference |")  # fmt: skip
    for r in reports:
        cells = " | ".join(f"{rows[s]:,} ({_mismatches(r.diffs, s)})" for s in STORES)
        print(f"| {r.name} | {r.kills} | {r.restarts} | {r.wall_s:.1f} | {cells} | "
              f"**{_mismatches(r.diffs)}** |")  # fmt: skip
    print("\nRows compared per store (mismatches in parentheses: missing, duplicated,")
    print("different or extra rows). Per table:\n")
    print("| table | rows | " + " | ".join(r.name for r in reports) + " |")
    print("|---|---:|" + "---:|" * len(reports))
    for table in sorted(reference):
        cells = " | ".join(_cell(r.diffs.get(table)) for r in reports)
        print(f"| {table} | {len(reference[table]):,} | {cells} |")


def _cell(d: TableDiff | None) -> str:
    if d is None or not d.mismatches:
        return "0"
    return f"{d.missing}/{d.duplicated}/{d.different}/{d.extra}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument("--txns", type=int, default=5_000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--outage", type=float, default=10.0, help="seconds; 0: no outage run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="20,000 ticks, 500 txns, 3 kills")
    args = parser.parse_args(argv)
    if args.quick:
        args.ticks, args.txns, args.kills, args.outage = 20_000, 500, 3, 3.0
    w = Workload(
        ticks=args.ticks, txns=args.txns, symbols=50, portfolios=max(20, args.txns // 25),
        ticks_per_s=200, seed=args.seed,
    )  # fmt: skip
    unique = secrets.token_hex(3)
    with tempfile.TemporaryDirectory(prefix="folio-chaos-") as tmp:
        base = Path(tmp)
        port = free_port()
        pid = start_tansu(port, base / "tansu.log")
        bootstrap = f"127.0.0.1:{port}"
        names = ["clean", "killed"] + (["outage"] if args.outage > 0 else [])
        targets: list[Target] = []
        try:
            inputs = _inputs(bootstrap, unique)
            publish_workload(bootstrap, inputs, w)
            targets = [make_target(base, n, bootstrap, inputs, unique) for n in names]
            for target in targets:
                migrate(target)
            clean, killed = targets[0], targets[1]
            flow_args = {t.name: run_args(0.5, ["--recovery-dir", str(t.recovery_dir)])
                         for t in targets}  # fmt: skip
            ran = run_to_end(clean, flow_args["clean"])
            work_s = max(0.5, ran.wall_s - ran.startup_s) / max(1, args.kills)
            stats = run_with_kills(
                killed, flow_args["killed"], args.kills, random.Random(args.seed), work_s
            )
            reference = snapshot_target(clean)
            reports = [_report("killed", stats, snapshot_target(killed), reference)]
            if args.outage > 0:
                wall, cuts = _outage_run(targets[2], flow_args["outage"], args.outage)
                got = snapshot_target(targets[2])
                reports.append(RunReport(f"outage {args.outage:g}s x{cuts}", 0, 0, wall,
                                         compare(reference, got)))  # fmt: skip
        finally:
            for target in targets:
                drop_target(target)
            stop(pid, "tansu")
    _print(reports, reference, ran.wall_s, w)
    print(f"\nkill points (s into each killed life): {stats.kill_points_s}")
    print(f"startup (to the first snapshot) of the clean run: {ran.startup_s:.1f} s")
    print(f"\n`python -m benchmarks.chaos_bench {shlex.join(argv or sys.argv[1:])}`")
    return 1 if any(_mismatches(r.diffs) for r in reports) else 0


def _report(name: str, stats: ChaosStats, got: Snapshot, reference: Snapshot) -> RunReport:
    return RunReport(name, stats.kills, stats.restarts, stats.wall_s, compare(reference, got))


if __name__ == "__main__":
    sys.exit(main())
