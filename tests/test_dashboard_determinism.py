"""The same input gives the same stored dashboards (Redis documents and
Postgres rows, versions and ``as_of`` included) whatever the batch sizes,
the flush cadence and the number of workers: card versions and contents
are functions of the inputs, not of when the cards were computed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
import redis
from bytewax.testing import TestingSource, cluster_main, run_main

from flows.dashboard.flow import DashboardConfig, DashboardSinks
from flows.ingest.flow import IngestConfig, IngestSinks
from flows.pipeline import PipelineConfig, PipelineSinks, PipelineSources, build_flow
from flows.valuation.flow import ValuationConfig, ValuationSinks
from schemas.envelope import RawBatch, RawRecord
from schemas.topics import RedisKeys
from sinks.postgres.dashboards import dashboards_sink
from sinks.redis.dashboard import RedisDashboardSink
from tests.conftest import REDIS_URL

NOW = 1_900_000_000_000  # the wall clock: never moves, so flush_ms alone decides flushes
START = int(datetime(2024, 3, 14, 9, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000
SYMBOLS = {"SPY": 400, "AAA": 10, "BBB": 20, "CCC": 50}
# (portfolio, user, txn partition): u1 has a portfolio on each shard
PORTFOLIOS = (("p1", "u1", 0), ("p2", "u2", 1), ("p3", "u1", 1))


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def ticks() -> list[RawRecord]:
    rows = []
    for step in range(40):  # every 75 minutes for two days
        ts = START + step * 75 * 60_000
        for n, (symbol, base) in enumerate(SYMBOLS.items()):
            price = base + ((step * (n + 3)) % 7) - 3
            doc = {"symbol": symbol, "price": str(price), "ts": ts, "provider": "alpha"}
            rows.append((ts, symbol, orjson.dumps(doc)))
    rows.sort()
    return [RawRecord(i, s.encode(), doc) for i, (_, s, doc) in enumerate(rows)]


def transactions() -> dict[int, list[RawRecord]]:
    out: dict[int, list[RawRecord]] = {0: [], 1: []}
    for pid, user, part in PORTFOLIOS:
        rows: list[dict[str, Any]] = [
            {"type": "DEPOSIT", "amount": "10000", "at": START - HOUR},
            {"type": "BUY", "symbol": "AAA", "quantity": "100", "price": "10", "at": START - 50},
            {"type": "BUY", "symbol": "BBB", "quantity": "40", "price": "20", "at": START - 40},
            {"type": "DIVIDEND", "symbol": "AAA", "amount": "7", "at": START + 5 * HOUR},
            {"type": "SELL", "symbol": "BBB", "quantity": "10", "price": "21",
             "at": START + 20 * HOUR},
            {"type": "BUY", "symbol": "CCC", "quantity": "5", "price": "50",
             "at": START + 30 * HOUR},
            {"type": "DEPOSIT", "amount": "300", "at": START + 31 * HOUR},
        ]  # fmt: skip
        for n, row in enumerate(rows):
            doc = {"txn_id": f"{pid}-{n}", "portfolio_id": pid, "user_id": user}
            doc |= {k: v for k, v in row.items() if k != "at"} | {"executed_at": iso(row["at"])}
            out[part].append(RawRecord(len(out[part]), pid.encode(), orjson.dumps(doc)))
    return out


def rules() -> list[RawRecord]:
    docs: list[dict[str, Any]] = [
        {"rule_id": "d1", "user_id": "u1", "portfolio_id": "p1", "kind": "drift",
         "threshold": "5", "target": {"AAA": "60", "BBB": "40"}},
        {"rule_id": "d3", "user_id": "u1", "portfolio_id": "p3", "kind": "drift",
         "threshold": "50", "target": {"AAA": "50", "CCC": "50"}, "active": False},
        {"rule_id": "px", "user_id": "u2", "symbol": "AAA", "kind": "price_above",
         "threshold": "11", "hysteresis": "1"},
        {"rule_id": "dv", "user_id": "u2", "portfolio_id": "p2", "kind": "dividend_received",
         "threshold": "0"},
    ]  # fmt: skip
    return [RawRecord(i, d["rule_id"].encode(), orjson.dumps(d)) for i, d in enumerate(docs)]


def chunks(topic: str, part: int, records: list[RawRecord], size: int) -> list[RawBatch]:
    return [RawBatch(topic, part, records[i : i + size]) for i in range(0, len(records), size)]


def run(prefix: str, dsn: str, tick_batch: int, txn_batch: int, flush_ms: int, workers: int):
    txns = transactions()
    txn_batches = [b for p in (0, 1) for b in chunks("txns", p, txns[p], txn_batch)]
    txn_batches += [RawBatch("txns", 0, []), RawBatch("txns", 1, [])]  # end markers
    sources = PipelineSources(
        TestingSource(chunks("ticks", 0, ticks(), tick_batch)),
        TestingSource(txn_batches),
        TestingSource([*chunks("rules", 0, rules(), 1), RawBatch("rules", 0, [])]),
    )
    sinks = PipelineSinks(
        ingest=IngestSinks(),
        valuation=ValuationSinks(),
        dashboard=DashboardSinks(
            cache=RedisDashboardSink(REDIS_URL, prefix), store=dashboards_sink(dsn)
        ),
    )
    config = PipelineConfig(
        ingest=IngestConfig(),
        valuation=ValuationConfig(
            portfolio_shards=("txns#0", "txns#1"), wait_for_transactions=True
        ),
        price_shards=("ticks#0",),
        rule_partitions=1,
        dashboard=DashboardConfig(user_shards=3, flush_ms=flush_ms),
    )
    flow = build_flow(sources, sinks, config, clock=lambda: NOW, flow_id="dash_det")
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)


def stored(prefix: str, dsn: str) -> tuple[dict[str, Any], dict[str, Any]]:
    client = redis.Redis.from_url(REDIS_URL)
    keys = RedisKeys(prefix)
    docs = {u: orjson.loads(client.get(keys.dashboard(u)) or b"null") for u in ("u1", "u2")}
    client.close()
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT user_id, document, version FROM dashboards").fetchall()
        conn.execute("DELETE FROM dashboards")
    return docs, {user: (doc, version) for user, doc, version in rows}


def test_same_input_same_dashboards_whatever_the_timing(redis_prefix: str, pg_dsn: str):
    shapes = [  # (tick batch, transaction batch, flush_ms, workers)
        (1, 1, 0, 1),  # everything flushed as it comes
        (7, 3, 10**10, 1),  # one flush, then only at the end of input
        (3, 2, 0, 2),  # two workers: other interleavings of shards, alerts and rules
    ]
    results = []
    for n, shape in enumerate(shapes):
        run(f"{redis_prefix}:{n}", pg_dsn, *shape)
        results.append(stored(f"{redis_prefix}:{n}", pg_dsn))
    docs, rows = results[0]
    u1 = docs["u1"]["cards"]
    assert set(u1) == {"performance", "income", "allocation", "movers", "activity"}
    assert u1["performance"]["portfolios"] == ["p1", "p3"]
    drift = {d["portfolio_id"]: d["rule_id"] for d in u1["allocation"]["drift"]}
    assert drift == {"p1": "d1", "p3": "d3"}  # a paused rule still gives its target
    assert rows["u1"][0] == docs["u1"] and rows["u1"][1] == docs["u1"]["version"]
    for n, other in enumerate(results[1:], start=1):
        for user in ("u1", "u2"):
            assert other[0][user] == docs[user], (shapes[n], user)
            assert other[1][user] == rows[user], (shapes[n], user)
