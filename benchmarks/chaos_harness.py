"""Run ``folio run`` in subprocesses against isolated stores, and kill it.

A ``Target`` is one complete set of outputs (Postgres database, Redis key
prefix, chDB directory, output topics, recovery directory) reading shared
input topics, so a crash-free run and a crashed run of the same input can be
compared side by side. Every process is started here and stopped by its own
handle (``Popen.kill`` is ``kill -9`` of that PID only).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis
from psycopg import sql

from benchmarks.chaos_compare import (
    Snapshot,
    clickhouse_snapshot,
    kafka_snapshot,
    postgres_snapshot,
    redis_snapshot,
)
from benchmarks.chaos_workload import (
    Workload,
    rule_records,
    tick_records,
    transaction_records,
)
from connectors.kafka.admin import ensure_topics
from connectors.kafka.producer import ReliableProducer
from folio.settings import TopicNames
from schemas.topics import TOPICS
from sinks.postgres.migrate import apply_migrations

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
INPUTS = ("ticks", "transactions", "rules")


class FlowFailed(RuntimeError):
    """A ``folio`` subprocess exited with an error; the message holds its log tail."""


@dataclass(frozen=True)
class Target:
    name: str
    home: Path
    kafka_bootstrap: str
    topics: TopicNames
    pg_dsn: str
    redis_url: str
    redis_prefix: str
    clickhouse_dsn: str | None  # None: ClickHouse off (``--no-clickhouse``)
    clickhouse_database: str
    topic_partitions: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    def partitions(self) -> dict[str, int]:
        """Topic name -> partition count, as ``folio migrate`` creates them."""
        names = self.topics.all()
        return {
            names[logical]: self.topic_partitions or spec.partitions
            for logical, spec in TOPICS.items()
        }

    @property
    def recovery_dir(self) -> Path:
        return self.home / "recovery"

    @property
    def log_path(self) -> Path:
        return self.home / "flow.log"

    def env(self) -> dict[str, str]:
        """The process environment with this target's ``FOLIO_*`` settings
        (other ``FOLIO_*`` variables pass through, as they reach an
        in-process reference run's ``Settings`` too)."""
        env = dict(os.environ)
        env.update(
            {
                "FOLIO_HOME": str(self.home),
                "FOLIO_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
                "FOLIO_REDIS_URL": self.redis_url,
                "FOLIO_REDIS_PREFIX": self.redis_prefix,
                "FOLIO_POSTGRES_DSN": self.pg_dsn,
                "FOLIO_CLICKHOUSE_DATABASE": self.clickhouse_database,
                "FOLIO_TOPIC_PARTITIONS": str(self.topic_partitions),
                "FOLIO_METRICS_PORT": "0",
                "FOLIO_LOG_LEVEL": "WARNING",
                "PYTHONPATH": str(REPO),
            }
        )
        if self.clickhouse_dsn is not None:
            env["FOLIO_CLICKHOUSE_DSN"] = self.clickhouse_dsn
        for logical, topic in self.topics.all().items():
            env[f"FOLIO_TOPICS__{logical.upper()}"] = topic
        env.update(self.extra_env)
        return env


def make_target(
    base: Path,
    name: str,
    kafka_bootstrap: str,
    inputs: TopicNames,
    unique: str,
    *,
    clickhouse: bool = True,
    topic_partitions: int = 0,
    redis_url: str = "redis://127.0.0.1:6379/0",
    extra_env: dict[str, str] | None = None,
) -> Target:
    """A target named ``name`` reading ``inputs``' input topics, writing its own outputs."""
    tag = f"{unique}_{name}"
    outputs = {k: f"{v}.{tag}" for k, v in TopicNames().all().items() if k not in INPUTS}
    topics = TopicNames(**{**outputs, **{k: inputs.all()[k] for k in INPUTS}})
    home = base / name
    home.mkdir(parents=True, exist_ok=True)
    return Target(
        name=name,
        home=home,
        kafka_bootstrap=kafka_bootstrap,
        topics=topics,
        pg_dsn=f"postgresql://postgres@127.0.0.1:5432/folio_t_{tag}",
        redis_url=redis_url,
        redis_prefix=f"folio_t_{tag}",
        clickhouse_dsn=f"chdb://{home / 'clickhouse'}" if clickhouse else None,
        clickhouse_database=f"folio_t_{tag}",
        topic_partitions=topic_partitions,
        extra_env=dict(extra_env or {}),
    )


def folio(target: Target, *args: str, timeout_s: float = 120.0) -> str:
    """Run one ``folio`` command to completion; its stdout, or ``FlowFailed``."""
    done = subprocess.run(
        [sys.executable, "-m", "folio.cli", *args],
        env=target.env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise FlowFailed(f"folio {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def migrate(target: Target) -> None:
    """Topics, Postgres tables and (when on) ClickHouse tables of ``target``."""
    if target.clickhouse_dsn is None:  # no chDB to own: no subprocess needed
        apply_migrations(target.pg_dsn)
        ensure_topics({"bootstrap.servers": target.kafka_bootstrap}, target.partitions())
        return
    folio(target, "migrate")


def publish(bootstrap: str, topic: str, records: Iterable[tuple[str | None, bytes]]) -> int:
    producer = ReliableProducer({"bootstrap.servers": bootstrap, "linger.ms": "20"})
    try:
        count = producer.produce_many(topic, records)
        producer.flush()
    finally:
        producer.close()
    return count


def publish_workload(bootstrap: str, topics: TopicNames, w: Workload) -> dict[str, int]:
    """Produce the workload's input; returns records per input topic."""
    return {
        "ticks": publish(bootstrap, topics.ticks, tick_records(w)),
        "transactions": publish(bootstrap, topics.transactions, transaction_records(w)),
        "rules": publish(bootstrap, topics.rules, rule_records(w)),
    }


def run_args(snapshot_interval: float = 0.5, extra: Sequence[str] = ()) -> list[str]:
    return ["run", "--exit-at-end", "--snapshot-interval", str(snapshot_interval), *extra]


def start_flow(target: Target, args: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start ``folio <args>`` for ``target`` (log appended to ``target.log_path``)."""
    with target.log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "folio.cli", *args],
            env=target.env(),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _finish(target: Target, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise FlowFailed(f"{target.name}: flow did not finish in {timeout_s} s") from None
    if code != 0:
        tail = target.log_path.read_text(errors="replace")[-3000:]
        raise FlowFailed(f"{target.name}: flow exited {code}:\n{tail}")


def _last_write(directory: Path) -> float:
    """Newest modification time in the recovery directory (0 if none)."""
    try:
        return max((f.stat().st_mtime for f in directory.iterdir()), default=0.0)
    except FileNotFoundError:
        return 0.0


def wait_for_snapshot(
    target: Target, proc: subprocess.Popen[bytes], timeout_s: float
) -> float | None:
    """Seconds until the flow wrote its recovery directory (its first epoch
    after starting), or None if it exited first."""
    started, wall = time.monotonic(), time.time()
    while time.monotonic() - started < timeout_s:
        if proc.poll() is not None:
            return None
        if _last_write(target.recovery_dir) > wall:
            return time.monotonic() - started
        time.sleep(0.02)
    return None


@dataclass(frozen=True)
class RunTime:
    wall_s: float
    startup_s: float  # until the first snapshot was written


def run_to_end(target: Target, args: Sequence[str], timeout_s: float = 900.0) -> RunTime:
    """Run the flow once to the end of its input (with ``--recovery-dir``)."""
    started = time.monotonic()
    proc = start_flow(target, args)
    startup = wait_for_snapshot(target, proc, timeout_s)
    _finish(target, proc, max(1.0, timeout_s - (time.monotonic() - started)))
    wall = time.monotonic() - started
    return RunTime(wall, wall if startup is None else startup)


@dataclass
class ChaosStats:
    kills: int = 0
    restarts: int = 0
    wall_s: float = 0.0
    kill_points_s: list[float] = field(default_factory=list)  # seconds into each killed life


def run_with_kills(
    target: Target,
    args: Sequence[str],
    kills: int,
    rng: random.Random,
    work_s: float,
    timeout_s: float = 3_600.0,
) -> ChaosStats:
    """Start the flow and ``kill -9`` it, ``kills`` times, restarting it each
    time; then let the last life run to the end of the input.

    Most lives are killed mid-processing: a random time in ``[0, work_s]``
    after the life wrote its first snapshot (startup and recovery done);
    one in five is killed during startup (``[0.2, 2]`` s, while it loads
    its snapshots). A life that reaches the end before its kill time ends
    the run early (fewer kills: the caller sees it in ``ChaosStats``)."""
    stats = ChaosStats()
    started = time.monotonic()
    while True:
        life_started = time.monotonic()
        proc = start_flow(target, args)
        if stats.kills >= kills:
            _finish(target, proc, max(1.0, timeout_s - (time.monotonic() - started)))
            break
        if rng.random() < 0.2:
            delay: float | None = rng.uniform(0.2, 2.0)
        else:
            ready = wait_for_snapshot(target, proc, timeout_s)
            delay = None if ready is None else ready + rng.uniform(0.0, work_s)
        remaining = 0.0 if delay is None else delay - (time.monotonic() - life_started)
        try:
            proc.wait(timeout=max(0.0, remaining))
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGKILL to this PID: no snapshot, no cleanup
            proc.wait()
            stats.kills += 1
            stats.restarts += 1
            stats.kill_points_s.append(round(time.monotonic() - life_started, 2))
            continue
        _finish(target, proc, 1.0)  # ended on its own: check it succeeded
        break
    stats.wall_s = time.monotonic() - started
    return stats


def snapshot_target(target: Target) -> Snapshot:
    """Everything ``target`` wrote (ClickHouse read in a subprocess)."""
    snap = postgres_snapshot(target.pg_dsn)
    snap |= redis_snapshot(target.redis_url, target.redis_prefix)
    if target.clickhouse_dsn is not None:
        snap |= clickhouse_snapshot(target.clickhouse_dsn, target.clickhouse_database, target.env())
    snap |= kafka_snapshot(target.kafka_bootstrap, target.topics.all())
    return snap


def drop_target(target: Target) -> None:
    """Remove the target's Postgres database and Redis keys (topics and
    directories go with the broker and the temporary directory)."""
    name = psycopg.conninfo.conninfo_to_dict(target.pg_dsn)["dbname"]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
        )
    client = redis.Redis.from_url(target.redis_url)
    try:
        keys = list(client.scan_iter(f"{target.redis_prefix}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
    finally:
        client.close()
