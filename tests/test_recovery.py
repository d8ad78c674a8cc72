"""Crash recovery end to end: ``folio run --exit-at-end --recovery-dir D
--snapshot-interval 0.5`` in a subprocess, killed with SIGKILL at random
points and restarted each time, ends with exactly what a crash-free run of
the same input wrote: every Postgres table, every Redis key, every
ClickHouse table read with FINAL (rollups merged) and the distinct messages
of every Kafka output topic.

Excluded from the comparison (``benchmarks.chaos_compare``), because they
record *when* a row was written and so differ between any two runs:
``transactions.recorded_at``, ``alerts.recorded_at``,
``portfolios.created_at`` (DEFAULT now()), ``positions.updated_at``,
``latest_valuations.updated_at``, ``dashboards.updated_at`` (now() at each
upsert), ClickHouse ``ticks.ingested_at`` (DEFAULT now64()) and the
dead letters' ``rejected_at`` (the wall clock at rejection). Everything
else counts, dashboard cards included (their versions and ``as_of`` come
from their inputs, not from flush timing).

The larger run (200,000 ticks, 5,000 transactions, 20 kills) is
``python -m benchmarks.chaos_bench``.
"""

from __future__ import annotations

import random
import time

import orjson
import pytest
from bytewax.testing import run_main

from benchmarks.chaos_compare import compare, diff_examples
from benchmarks.chaos_harness import (
    drop_target,
    make_target,
    migrate,
    publish_workload,
    run_args,
    run_with_kills,
    snapshot_target,
)
from benchmarks.chaos_workload import Workload
from folio.settings import Settings
from folio.wiring import pipeline_flow
from sinks.clickhouse.client import ClickHouseClient
from tests.test_recovery_support import snapshot

pytestmark = pytest.mark.slow

# 200 s of event time: a few minutes of candles and history valuations.
WORKLOAD = Workload(ticks=20_000, txns=500, symbols=20, portfolios=40, ticks_per_s=50)
KILLS = 3
KINDS = {"BUY", "SELL", "DIVIDEND", "DEPOSIT", "WITHDRAWAL", "FEE", "SPLIT"}


def test_kill_9_and_restart_converge_to_the_crash_free_result(
    settings: Settings,
    clickhouse: ClickHouseClient,
    kafka_bootstrap: str,
    tmp_path,
    unique: str,
):
    publish_workload(kafka_bootstrap, settings.topics, WORKLOAD)
    target = make_target(
        tmp_path, "killed", kafka_bootstrap, settings.topics, unique,
        topic_partitions=settings.topic_partitions,
    )  # fmt: skip
    try:
        # The crash-free reference: the same flow, in this process, no recovery.
        started = time.monotonic()
        run_main(pipeline_flow(settings, exit_at_end=True, clickhouse=clickhouse))
        # Kill points are drawn from [0, work_s] after each life's first
        # snapshot: all of them together within half the reference's work,
        # so a life never reaches the end of the input before its kill.
        work_s = (time.monotonic() - started) / (2 * KILLS)
        reference = snapshot(settings, clickhouse)

        migrate(target)
        args = run_args(0.5, ["--recovery-dir", str(target.recovery_dir)])
        stats = run_with_kills(target, args, KILLS, random.Random(unique), work_s)
        assert stats.kills == KILLS, f"the flow finished after {stats.kills} kills"
        killed = snapshot_target(target)
    finally:
        drop_target(target)

    # The input exercised what it should: every transaction kind was applied,
    # the ledger rejected some, and every store holds rows.
    applied_kinds = {row[0][3] for row in reference["postgres.transactions"].values()}
    assert applied_kinds == KINDS
    letters = [orjson.loads(row[0]) for rows in reference["kafka.dlq"].values() for row in rows]
    reasons = {letter["reason"] for letter in letters}
    assert {"oversell", "split_without_position", "late", "non_positive"} <= reasons
    for table in ("clickhouse.ticks", "clickhouse.candles_1m", "clickhouse.valuations"):
        assert len(reference[table]) > 50, table
    assert reference["postgres.alerts"] and reference["redis.price"]

    diffs = compare(reference, killed)
    assert set(killed) == set(reference)
    wrong = {t: d for t, d in diffs.items() if d.mismatches}
    assert not wrong, "\n".join([str(wrong), *diff_examples(reference, killed)])
