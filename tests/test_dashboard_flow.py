"""The dashboard inside ``flows.pipeline.build_flow``: ticks and
transactions in (Bytewax testing sources), cards out to a testing sink and
the real Redis sink; then a replay of the same input changes nothing.
Also: the dashboard shard's snapshots restore it exactly."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import redis
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.dashboard.benchmark import Benchmark
from flows.dashboard.board import DashboardUpdate, Deps, UserBoard
from flows.dashboard.books import PortfolioBook
from flows.dashboard.compute import CardSettings
from flows.dashboard.flow import DashboardConfig, DashboardLogic, DashboardSinks
from flows.dashboard.shard import DashboardShard, ShardInput, Snapshotter, restore
from flows.ingest.flow import IngestConfig, IngestSinks
from flows.pipeline import PipelineConfig, PipelineSinks, PipelineSources, build_flow
from flows.portfolio.ledger import PortfolioState
from flows.valuation.flow import ValuationConfig, ValuationSinks
from schemas.alerts import Alert, AlertKind
from schemas.envelope import RawBatch, RawRecord
from schemas.topics import RedisKeys
from sinks.redis.dashboard import RedisDashboardSink
from tests.conftest import REDIS_URL


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


NOW = ms("2024-03-16T00:00:00")
DAY1, DAY2 = "2024-03-14T", "2024-03-15T"
PRICES = {  # symbol -> [(time, price)]: two days
    "SPY": [(DAY1 + "10:00", "400"), (DAY1 + "20:00", "404")],
    "AAA": [(DAY1 + "10:00", "10"), (DAY1 + "20:00", "11")],
    "BBB": [(DAY1 + "10:00", "20"), (DAY1 + "20:00", "19")],
}
PRICES["SPY"] += [(DAY2 + "10:00", "406"), (DAY2 + "15:00", "410")]
PRICES["AAA"] += [(DAY2 + "10:00", "11"), (DAY2 + "15:00", "12")]
PRICES["BBB"] += [(DAY2 + "10:00", "20"), (DAY2 + "15:00", "18")]
TXNS = [
    ("p1", "u1", "DEPOSIT", {"amount": "10000"}, "2024-03-13T09:00"),
    ("p1", "u1", "BUY", {"symbol": "AAA", "quantity": "100", "price": "10"}, "2024-03-13T09:01"),
    ("p1", "u1", "BUY", {"symbol": "BBB", "quantity": "50", "price": "20"}, "2024-03-13T09:02"),
    ("p1", "u1", "DIVIDEND", {"symbol": "AAA", "amount": "5"}, "2024-03-14T12:00"),
    ("p2", "u2", "DEPOSIT", {"amount": "500"}, "2024-03-13T09:00"),
]


def tick_batches() -> list[RawBatch]:
    rows = sorted((ms(t), s, p) for s, points in PRICES.items() for t, p in points)
    records = [
        RawRecord(
            n, s.encode(), orjson.dumps({"symbol": s, "price": p, "ts": ts, "provider": "alpha"})
        )
        for n, (ts, s, p) in enumerate(rows)
    ]
    return [RawBatch("ticks", 0, records[i : i + 3]) for i in range(0, len(records), 3)]


def txn_batches() -> list[RawBatch]:
    records = []
    for n, (pid, user, kind, extra, at) in enumerate(TXNS):
        doc = {"txn_id": f"t{n}", "portfolio_id": pid, "user_id": user, "type": kind}
        doc |= extra | {"executed_at": at + ":00Z"}
        records.append(RawRecord(n, pid.encode(), orjson.dumps(doc)))
    return [RawBatch("txns", 0, records)]


def rule_batches() -> list[RawBatch]:
    rule = {"rule_id": "r1", "user_id": "u1", "portfolio_id": "p1"}
    rule |= {"kind": "dividend_received", "threshold": "0"}
    # A drift rule: its target is the allocation card's target for p1.
    drift: dict[str, object] = {
        "rule_id": "r2",
        "user_id": "u1",
        "portfolio_id": "p1",
        "kind": "drift",
    }
    drift |= {"threshold": "50", "target": {"AAA": "50", "BBB": "40", "CCC": "10"}}
    records = [RawRecord(0, b"r1", orjson.dumps(rule)), RawRecord(1, b"r2", orjson.dumps(drift))]
    return [RawBatch("rules", 0, records)]


def run(redis_prefix: str, cards: CardSettings | None = None) -> list[DashboardUpdate]:
    captured: list[list[DashboardUpdate]] = []
    sinks = PipelineSinks(
        ingest=IngestSinks(),
        valuation=ValuationSinks(),
        dashboard=DashboardSinks(
            cache=RedisDashboardSink(REDIS_URL, redis_prefix), store=TestingSink(captured)
        ),
    )
    config = PipelineConfig(
        ingest=IngestConfig(),
        valuation=ValuationConfig(portfolio_shards=("txns#0",), live_window_ms=1_000),
        price_shards=("ticks#0",),
        dashboard=DashboardConfig(user_shards=4, flush_ms=0, cards=cards or CardSettings()),
    )
    sources = PipelineSources(
        TestingSource(tick_batches()), TestingSource(txn_batches()), TestingSource(rule_batches())
    )
    run_main(build_flow(sources, sinks, config, clock=lambda: NOW, flow_id="dash_e2e"))
    return [update for rows in captured for update in rows]


def test_the_performance_card_uses_the_configured_benchmark(redis_prefix: str):
    """Any symbol can be the benchmark (its prices reaching the shards:
    ``tests/test_valuation_shard.py``)."""
    run(redis_prefix, CardSettings(benchmark="BBB"))
    client = redis.Redis.from_url(REDIS_URL)
    doc = orjson.loads(client.get(RedisKeys(redis_prefix).dashboard("u1")) or b"null")
    assert doc["cards"]["performance"]["benchmark"] == "BBB"


def test_cards_through_the_pipeline_and_replay(redis_prefix: str):
    updates = run(redis_prefix)

    # Per user and card, versions rise strictly with every emission.
    last: dict[tuple[str, str], int] = {}
    for update in updates:
        for name, card in update.cards.items():
            assert card.version > last.get((update.user_id, name), -1)
            last[(update.user_id, name)] = card.version
    u2 = [set(u.cards) for u in updates if u.user_id == "u2"]
    assert u2 == [{"performance", "allocation", "movers", "activity"}]  # one valuation, no income

    client = redis.Redis.from_url(REDIS_URL)
    key = RedisKeys(redis_prefix).dashboard("u1")
    doc = orjson.loads(client.get(key) or b"null")
    cards = doc["cards"]
    assert doc["user_id"] == "u1" and doc["version"] == max(c["version"] for c in cards.values())

    perf = cards["performance"]
    # cash 10000 - 1000 - 1000 + 5 = 8005; AAA 100 x 12; BBB 50 x 18
    assert perf["value"] == "10105"
    # the day before closed at 8005 + 100 x 11 + 50 x 19 = 10055
    assert perf["day_change"] == "50"
    assert perf["benchmark"] == "SPY" and perf["returns"]["1m"]["twr"] is None
    # as_of: the newest valuation's window end, for every valuation card
    assert perf["as_of"] == cards["allocation"]["as_of"] == "2024-03-15T15:00:01.000Z"

    alloc = cards["allocation"]
    assert [(r["symbol"], r["weight"]) for r in alloc["by_symbol"]] == [
        ("AAA", "0.571429"),
        ("BBB", "0.428571"),
    ]
    assert alloc["cash"] == "8005"
    [drift] = alloc["drift"]  # AAA 1200 and BBB 900 of 2100 against 50/40/10
    assert drift["portfolio_id"] == "p1" and drift["rule_id"] == "r2"
    assert drift["max_drift_pts"] == "10"
    assert [(r["symbol"], r["weight_pct"], r["drift_pts"]) for r in drift["by_symbol"]] == [
        ("CCC", "0", "-10"),
        ("AAA", "57.1429", "7.1429"),
        ("BBB", "42.8571", "2.8571"),
    ]
    u2_doc = orjson.loads(client.get(RedisKeys(redis_prefix).dashboard("u2")) or b"null")
    assert u2_doc["cards"]["allocation"]["drift"] is None  # no target

    movers = cards["movers"]  # against the first prices of 2024-03-15: AAA 11, BBB 20
    assert movers["day"] == "2024-03-15"
    assert [(m["symbol"], m["change_pct"]) for m in movers["gainers"]] == [("AAA", "0.090909")]
    assert [(m["symbol"], m["change_pct"]) for m in movers["losers"]] == [("BBB", "-0.1")]

    income = cards["income"]
    assert income["this_month"] == {"USD": "5"} and income["projected_annual"] == {"USD": "5"}
    assert income["yield_on_cost"] == {"USD": "0.0025"}  # 5 / 2000
    assert [p["date"] for p in income["next_payments"]] == ["2025-03-14"]

    activity = cards["activity"]
    assert [t["txn_id"] for t in activity["transactions"]] == ["t3", "t2", "t1", "t0"]
    [alert] = activity["alerts"]  # routed from the alert step
    assert alert["kind"] == "dividend_received" and alert["triggered_at"].startswith("2024-03-14")

    # A replay from scratch (same inputs) writes nothing new.
    keys = list(client.scan_iter(f"{redis_prefix}:dashboard:*"))
    stored = {k: client.get(k) for k in keys if client.type(k) == b"string"}
    stored_hashes = {k: client.hgetall(k) for k in keys if client.type(k) == b"hash"}
    assert len(stored) == 2 and len(stored_hashes) == 4
    pubsub = client.pubsub()
    channels = [RedisKeys(redis_prefix).user_channel(u) for u in ("u1", "u2")]
    pubsub.subscribe(*channels)
    assert run(redis_prefix)
    client.publish(channels[0], b"marker")  # after the replay: must be the first message
    message = pubsub.get_message(timeout=5)
    while message is not None and message["type"] == "subscribe":
        message = pubsub.get_message(timeout=5)
    assert message is not None and message["data"] == b"marker"
    pubsub.close()
    assert {k: client.get(k) for k in stored} == stored
    assert {k: client.hgetall(k) for k in stored_hashes} == stored_hashes
    client.close()


def test_dashboard_shard_snapshot_restores_it():
    shard = DashboardShard()
    shard.add(ShardInput([], [], [("SPY", ms("2024-03-14T10:00"), Decimal(400))], []))
    snapshotter = Snapshotter()
    first = snapshotter.take(shard)
    restored, _ = restore(pickle.loads(pickle.dumps(first)))
    assert restored == shard
    assert restored.bench.closes == {
        ms("2024-03-14T10:00") // 86_400_000: (ms("2024-03-14T10:00"), Decimal(400))
    }


def alert(n: int, user: str = "u1") -> Alert:
    return Alert(
        alert_id=f"a{n}",
        rule_id="r1",
        rule_version=1,
        user_id=user,
        kind=AlertKind.PRICE_ABOVE,
        symbol="AAA",
        threshold=Decimal(10),
        message=f"AAA above 10 ({n})",
        triggered_at=datetime.fromtimestamp(1_700_000_000 + n, UTC),
    )


def test_at_most_one_update_per_user_per_flush_interval():
    now = [1_000]
    logic = DashboardLogic.resume(None, DashboardConfig(flush_ms=1_000), lambda: now[0])
    [[first]] = logic.on_batch([ShardInput([], [], [], [alert(1)])])[0]
    assert first.user_id == "u1" and set(first.cards) == {"activity"}
    # Within the interval: held back, with a wake-up at its end.
    assert logic.on_batch([ShardInput([], [], [], [alert(2)])])[0] == []
    assert logic.on_batch([ShardInput([], [], [], [alert(3)])])[0] == []
    assert logic.notify_at() == datetime.fromtimestamp(2, UTC)
    now[0] = 2_000
    [[second]] = logic.on_notify()[0]
    activity = orjson.loads(second.cards["activity"].json)
    assert [a["alert_id"] for a in activity["alerts"]] == ["a3", "a2", "a1"]
    assert logic.notify_at() is None
    # A known alert again changes nothing: no update even when due.
    now[0] = 5_000
    assert logic.on_batch([ShardInput([], [], [], [alert(3)])])[0] == []


def test_snapshots_of_the_previous_layout_still_restore():
    # What the dashboard pickled before per-card clocks, drift targets and
    # the benchmark's recent prices existed.
    board = UserBoard.__new__(UserBoard)
    old_board = {"user_id": "u1", "portfolios": {}, "clock_ms": 5_000, "today": 3}
    old_board |= {"history_rev": 0, "income_day": 2, "dirty": {"activity"}, "cards": {}}
    board.__setstate__((None, old_board | {"transactions": [], "alerts": []}))
    assert (board.valuation_ms, board.activity_ms, board.today) == (5_000, 5_000, 3)
    assert board.deps == Deps() and board.targets == {} and board.dirty == {"activity"}
    book = PortfolioBook.__new__(PortfolioBook)
    old_book: dict[str, Any] = {"portfolio_id": "p1", "latest": None, "closes": {}, "flows": {}}
    book.__setstate__((None, old_book | {"ledger": PortfolioState("p1")}))
    assert book.opening is None and book.ledger.portfolio_id == "p1"
    bench = Benchmark.__new__(Benchmark)
    bench.__setstate__({"closes": {19_000: (1_641_600_000_123, Decimal(400))}, "rev": 1})
    assert bench.newest_ts == 1_641_600_000_123 and bench.latest_before(2 * 10**12)
    shard = DashboardShard.__new__(DashboardShard)
    shard.__setstate__({"users": {}, "bench": bench, "firsts": {"AAA": (1, Decimal(1), None)}})
    assert shard.waiting == set() and shard.rule_owners == {} and not hasattr(shard, "firsts")
    assert shard.bench is bench
