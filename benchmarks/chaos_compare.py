"""Snapshot every store a pipeline run wrote, and compare two snapshots.

What is compared, per store:
- Postgres: every row of every table the pipeline writes, all columns but
  the wall-clock ones in ``EXCLUDED`` (they record *when* a row was written,
  which differs between any two runs; nothing downstream keys on them).
- Redis: every key under the run's prefix (prefix removed), with its value,
  one table per key family (``redis.price``, ``redis.valuation``...).
- ClickHouse: every table read with ``FINAL``; rollups merged per bucket.
  Read in a subprocess: chDB allows one engine per process.
- Kafka: the distinct messages of every output topic (delivery is
  at-least-once, so a replay may repeat a message but never change one).

A snapshot is ``{"store.table": {key: [row, ...]}}`` with every value a
string, so snapshots from different processes compare exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import redis

from connectors.kafka.reader import read_topic

Rows = dict[str, list[list[str]]]  # key -> rows with that key
Snapshot = dict[str, Rows]

# Columns that hold the wall-clock time a row was written: they differ
# between any two runs of the same input, crash or not.
EXCLUDED = {
    "transactions": {"recorded_at"},  # DEFAULT now() at insert
    "positions": {"updated_at"},  # now() at each upsert
    "portfolios": {"created_at"},  # DEFAULT now() at first insert
    "latest_valuations": {"updated_at"},  # now() at each upsert
    "alerts": {"recorded_at"},  # DEFAULT now() at insert
    "dashboards": {"updated_at"},  # now() at each upsert
}
# ClickHouse: ``ticks.ingested_at`` is DEFAULT now64(); in the dead-letter
# topic ``rejected_at`` is the wall clock at rejection.
PG_KEYS = {"transactions": 1, "positions": 2, "portfolios": 1, "latest_valuations": 1}
PG_KEYS |= {"alerts": 1, "dashboards": 1}
CH_QUERIES = {
    "ticks": ("SELECT symbol, ts, provider, price, volume, currency, tick_id FROM {t} FINAL", 3),
    "candles_1m": ("SELECT * FROM {t} FINAL", 2),
    "valuations": (
        "SELECT portfolio_id, window_kind, window_end, * EXCEPT (portfolio_id, window_kind,"
        " window_end) FROM {t} FINAL",
        3,
    ),
    "alerts": ("SELECT * FROM {t} FINAL", 1),
}
ROLLUP = (
    "SELECT symbol, bucket_start, argMinMerge(open), max(high), min(low), argMaxMerge(close),"
    " sum(volume), sum(trades), any(currency) FROM {t} GROUP BY symbol, bucket_start"
)
ROLLUPS = ("candles_1h", "candles_1d", "candles_1w", "candles_1mo")
OUTPUT_TOPICS = ("prices", "candles", "valuations", "alerts", "dlq")


def _text(value: Any) -> str:
    if value is None:
        return "\\N"
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _keyed(rows: Iterable[Iterable[Any]], key_len: int) -> Rows:
    out: Rows = {}
    for row in rows:
        values = [_text(v) for v in row]
        out.setdefault("|".join(values[:key_len]), []).append(values)
    return out


def postgres_snapshot(dsn: str) -> Snapshot:
    snap: Snapshot = {}
    with psycopg.connect(dsn) as conn:
        for table, key_len in PG_KEYS.items():
            columns = [
                name
                for (name,) in conn.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = %s ORDER BY ordinal_position",
                    (table,),
                )
                if name not in EXCLUDED.get(table, set())
            ]
            query = f"SELECT {', '.join(columns)} FROM {table}"  # names from the catalogue
            snap[f"postgres.{table}"] = _keyed(conn.execute(query).fetchall(), key_len)
    return snap


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def redis_snapshot(url: str, prefix: str) -> Snapshot:
    """Every key under ``prefix``, one table per key family (``price``,
    ``valuation``, ``alert``, ``dashboard``...)."""
    client = redis.Redis.from_url(url)
    snap: Snapshot = {}
    try:
        for raw_key in client.scan_iter(f"{prefix}:*", count=1000):
            key = _str(raw_key).removeprefix(f"{prefix}:")
            kind = _str(client.type(raw_key))
            if kind == "hash":
                items = sorted((_str(k), _str(v)) for k, v in client.hgetall(raw_key).items())
                value = json.dumps(items)
            elif kind == "string":
                value = _str(client.get(raw_key) or b"")
            else:
                value = f"<{kind}>"
            snap.setdefault(f"redis.{key.split(':', 1)[0]}", {})[key] = [[key, value]]
    finally:
        client.close()
    return snap


def clickhouse_rows(client: Any) -> Snapshot:
    """Every ClickHouse table the pipeline writes, through an open client."""
    snap: Snapshot = {}
    for table, (query, key_len) in CH_QUERIES.items():
        rows = client.query_rows(query.format(t=client.table(table)))
        snap[f"clickhouse.{table}"] = _keyed(rows, key_len)
    for table in ROLLUPS:
        rows = client.query_rows(ROLLUP.format(t=client.table(table)))
        snap[f"clickhouse.{table}"] = _keyed(rows, 2)
    return snap


def clickhouse_snapshot_here(dsn: str, database: str) -> Snapshot:
    """Read ClickHouse in this process (it must not own another chDB engine)."""
    from sinks.clickhouse.client import open_clickhouse

    with open_clickhouse(dsn, database) as client:
        return clickhouse_rows(client)


def clickhouse_snapshot(dsn: str, database: str, env: dict[str, str] | None = None) -> Snapshot:
    """``clickhouse_snapshot_here`` in a subprocess (chDB: one engine per process)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.chaos_compare", dsn, database],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        check=False,
        env=env,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"reading {dsn} failed: {done.stderr.decode()[-2000:]}")
    snap: Snapshot = orjson.loads(done.stdout)
    return snap


def kafka_snapshot(bootstrap: str, topics: dict[str, str], timeout_s: float = 60.0) -> Snapshot:
    """Distinct messages of each output topic, keyed by message key and text.

    Dead letters are keyed by their message key alone (source topic/partition/
    offset: one per rejected record) with ``rejected_at`` dropped, so a dead
    letter that came out different reads as *different* (or *duplicated*, if
    a replay wrote both versions), and only a lost one as *missing*."""
    snap: Snapshot = {}
    config = {"bootstrap.servers": bootstrap}
    for logical in OUTPUT_TOPICS:
        rows: Rows = {}
        for _, _, key, raw in read_topic(config, topics[logical], timeout_s):
            value, name = raw or b"", key.decode() if key else ""
            if logical == "dlq":
                doc = orjson.loads(value)
                doc.pop("rejected_at", None)
                text = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()
                versions = rows.setdefault(name, [])
                if [text] not in versions:
                    versions.append([text])
                continue
            text = value.decode()
            rows[f"{name}|{text}"] = [[text]]
        snap[f"kafka.{logical}"] = rows
    return snap


@dataclass(frozen=True)
class TableDiff:
    rows: int  # rows in the reference
    missing: int  # keys in the reference, absent here
    duplicated: int  # rows beyond the reference's count for a key
    different: int  # keys present in both with other values
    extra: int  # keys absent from the reference

    @property
    def mismatches(self) -> int:
        return self.missing + self.duplicated + self.different + self.extra


def compare(reference: Snapshot, other: Snapshot) -> dict[str, TableDiff]:
    """Per table (``store.table``), how ``other`` differs from ``reference``."""
    out: dict[str, TableDiff] = {}
    for table in sorted(set(reference) | set(other)):
        ref, got = reference.get(table, {}), other.get(table, {})
        missing = sum(1 for k in ref if k not in got)
        extra = sum(1 for k in got if k not in ref)
        duplicated = different = 0
        for key in ref.keys() & got.keys():
            a, b = ref[key], got[key]
            duplicated += max(0, len(b) - len(a))
            if {tuple(r) for r in a} != {tuple(r) for r in b}:
                different += 1
        out[table] = TableDiff(
            sum(len(v) for v in ref.values()), missing, duplicated, different, extra
        )
    return out


def diff_examples(reference: Snapshot, other: Snapshot, limit: int = 3) -> list[str]:
    """A few concrete differences, for a failure message."""
    lines: list[str] = []
    for table in sorted(set(reference) | set(other)):
        ref, got = reference.get(table, {}), other.get(table, {})
        for key in sorted(ref.keys() | got.keys()):
            if ref.get(key) != got.get(key):
                lines.append(f"{table} {key[:80]}: {ref.get(key)!s:.300} != {got.get(key)!s:.300}")
                if len([x for x in lines if x.startswith(table)]) >= limit:
                    break
    return lines


if __name__ == "__main__":
    sys.stdout.write(orjson.dumps(clickhouse_snapshot_here(sys.argv[1], sys.argv[2])).decode())
