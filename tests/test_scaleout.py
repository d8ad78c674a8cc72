"""Scale-out: one worker, two workers (``--workers 2``) and two processes
(Bytewax cluster mode, ``--process-id``/``--addresses``) produce identical
Postgres, Redis and Kafka outputs from the same input. ClickHouse is off
(``--no-clickhouse``): the embedded chDB belongs to one process, and
``folio run`` refuses a cluster that would share it. In a cluster every
process must find its share of the recovery partitions: an empty recovery
directory is refused instead of being filled with a full set."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmarks.chaos_compare import compare, diff_examples
from benchmarks.chaos_harness import (
    REPO,
    Target,
    drop_target,
    make_target,
    migrate,
    publish_workload,
    run_args,
    snapshot_target,
    start_flow,
)
from benchmarks.chaos_workload import Workload
from deploy.processes import free_port
from folio.settings import Settings

pytestmark = pytest.mark.slow

WORKLOAD = Workload(ticks=8_000, txns=300, symbols=12, portfolios=20, ticks_per_s=40)


def finish(target: Target, procs: list[subprocess.Popen[bytes]]) -> None:
    codes = [p.wait(timeout=300) for p in procs]
    assert codes == [0] * len(procs), target.log_path.read_text()[-3000:]


def test_one_worker_two_workers_and_two_processes_agree(
    settings: Settings, kafka_bootstrap: str, tmp_path, unique: str
):
    publish_workload(kafka_bootstrap, settings.topics, WORKLOAD)
    shape = {"one": ["--workers", "1"], "two_workers": ["--workers", "2"], "two_processes": []}
    targets = {
        name: make_target(
            tmp_path,
            name,
            kafka_bootstrap,
            settings.topics,
            unique,
            clickhouse=False,
            topic_partitions=settings.topic_partitions,
        )
        for name in shape
    }
    try:
        for name, target in targets.items():
            migrate(target)
            args = run_args(0.5, ["--no-clickhouse", *shape[name]])
            if name != "two_processes":
                finish(target, [start_flow(target, args)])
                continue
            addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(2))
            cluster = [
                start_flow(target, [*args, "--process-id", str(i), "--addresses", addresses])
                for i in range(2)
            ]
            finish(target, cluster)
        snaps = {name: snapshot_target(target) for name, target in targets.items()}
    finally:
        for target in targets.values():
            drop_target(target)

    one = snaps["one"]
    assert len(one["postgres.transactions"]) > 200 and len(one["kafka.valuations"]) > 500
    assert not any(table.startswith("clickhouse.") for table in one)
    for name in ("two_workers", "two_processes"):
        diffs = compare(one, snaps[name])
        wrong = {t: d for t, d in diffs.items() if d.mismatches}
        assert not wrong, "\n".join([name, str(wrong), *diff_examples(one, snaps[name])])


def folio_error(tmp_path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLIO_")}
    env |= {"FOLIO_HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "folio.cli", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1 and lines[0].startswith("folio: error:"), done.stderr
    return lines[0]


def test_a_cluster_refuses_embedded_chdb_and_an_empty_recovery_dir(tmp_path):
    cluster = ["run", "--process-id", "0", "--addresses", "127.0.0.1:1;127.0.0.1:2"]
    assert "--no-clickhouse" in folio_error(tmp_path, *cluster)
    empty = tmp_path / "recovery"
    line = folio_error(tmp_path, *cluster, "--no-clickhouse", "--recovery-dir", str(empty))
    assert "holds no partitions" in line
    assert not empty.exists() or not any(empty.iterdir())
