"""The walking skeleton end to end, against real Kafka, Redis, Postgres and
ClickHouse: ticks and transactions in, every output checked, then a full
replay of both topics changes nothing."""

from __future__ import annotations

import orjson
import psycopg
import redis
from bytewax.testing import run_main

from connectors.portfolio_sim import PortfolioSimConfig, PortfolioSimulator
from connectors.simulator import MarketSimulator, SimConfig
from folio.settings import Settings
from folio.wiring import pipeline_flow
from schemas import ConsolidatedPrice, DeadLetter, Valuation
from sinks.clickhouse.client import ClickHouseClient
from tests.kafka_util import produce, read_topic

BAD = [
    b"{not json",
    b'{"symbol":"A","price":"NaN","ts":1,"provider":"alpha"}',
    b'{"symbol":"A","price":"-1","ts":1767225600000,"provider":"alpha"}',
    b'{"symbol":"A","price":"5","ts":"2026-01-01T00:00:00","provider":"alpha"}',
]
BAD_REASONS = {"malformed_json", "non_finite", "non_positive", "naive_timestamp"}


def feed(settings: Settings, ticks: int) -> tuple[MarketSimulator, list[bytes]]:
    sim = MarketSimulator(SimConfig(symbols=6, ticks_per_s=200, seed=3))
    records = list(sim.records(ticks))
    produce(settings.kafka_bootstrap, settings.topics.ticks, records)
    produce(settings.kafka_bootstrap, settings.topics.ticks, [("A", raw) for raw in BAD])
    txns = PortfolioSimulator(
        PortfolioSimConfig(portfolios=4, symbols=6, positions=3, start_ms=sim.cfg.start_ms)
    )
    opening = list(txns.opening(dict.fromkeys(sim.symbols, 100.0)))
    later = [txns.activity(sim.cfg.start_ms + 2_000 + i * 500) for i in range(20)]
    produce(settings.kafka_bootstrap, settings.topics.transactions, opening + later)
    return sim, [value for _, value in records]


def run_pipeline(settings: Settings, clickhouse: ClickHouseClient) -> None:
    run_main(pipeline_flow(settings, exit_at_end=True, clickhouse=clickhouse))


def snapshot(settings: Settings, clickhouse: ClickHouseClient) -> dict[str, object]:
    r = redis.Redis.from_url(settings.redis_url.get_secret_value())
    prices = {k: r.hgetall(k) for k in r.scan_iter(f"{settings.redis_prefix}:price:*")}
    valuations = {
        k: r.get(k)
        for k in r.scan_iter(f"{settings.redis_prefix}:valuation:*")
        if not k.endswith(b":v")
    }
    with psycopg.connect(settings.postgres_dsn.get_secret_value()) as conn:
        pg = {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("transactions", "positions", "portfolios")
        }
        pg["latest"] = conn.execute(
            "SELECT portfolio_id, version, payload FROM latest_valuations ORDER BY 1"
        ).fetchall()
    ch = {
        table: clickhouse.query_rows(
            f"SELECT * EXCEPT ingested_at FROM {clickhouse.table(table)} FINAL ORDER BY ALL"
            if table == "ticks"
            else f"SELECT * FROM {clickhouse.table(table)} FINAL ORDER BY ALL"
        )
        for table in ("ticks", "candles_1m", "valuations")
    }
    return {"prices": prices, "valuations": valuations, "pg": pg, "ch": ch}


def test_pipeline_end_to_end_and_replay(settings: Settings, clickhouse: ClickHouseClient):
    _, good = feed(settings, ticks=1_200)
    run_pipeline(settings, clickhouse)

    # ClickHouse: every valid tick once.
    [(stored,)] = clickhouse.query_rows(f"SELECT count() FROM {clickhouse.table('ticks')} FINAL")
    assert stored == len(good)

    # Redis: the latest price of each symbol is the last one simulated.
    r = redis.Redis.from_url(settings.redis_url.get_secret_value())
    last = {}
    for raw in good:
        doc = orjson.loads(raw)
        last[doc["symbol"]] = doc
    for symbol, doc in last.items():
        stored_price = r.hgetall(f"{settings.redis_prefix}:price:{symbol}")
        assert stored_price[b"price"] == doc["price"].encode()

    # Kafka: consolidated prices validate against the contract.
    prices = read_topic(settings.kafka_bootstrap, settings.topics.prices)
    assert len(prices) == len(good)
    ConsolidatedPrice.model_validate_json(prices[0][3])

    # DLQ: each bad tick with its reason and source coordinates.
    letters = [
        DeadLetter.model_validate_json(v)
        for *_, v in read_topic(settings.kafka_bootstrap, settings.topics.dlq)
    ]
    tick_letters = [d for d in letters if d.source_topic == settings.topics.ticks]
    assert {d.reason for d in tick_letters} == BAD_REASONS
    assert all(d.offset >= 0 and d.raw for d in tick_letters)

    # Candles: one per symbol per minute covered, closed at the end of input.
    [(candles,)] = clickhouse.query_rows(
        f"SELECT count() FROM {clickhouse.table('candles_1m')} FINAL"
    )
    minutes = {(orjson.loads(v)["symbol"], orjson.loads(v)["ts"][:16]) for v in good}
    assert candles == len(minutes)

    # Postgres: every portfolio valued, positions present, ledger complete.
    with psycopg.connect(settings.postgres_dsn.get_secret_value()) as conn:
        [(portfolios,)] = conn.execute("SELECT count(*) FROM latest_valuations").fetchall()
        [(positions,)] = conn.execute("SELECT count(*) FROM positions").fetchall()
        [(ledger,)] = conn.execute("SELECT count(*) FROM transactions").fetchall()
    assert portfolios == 4
    assert positions >= 4 * 3
    rejected = [d for d in letters if d.source_topic == settings.topics.transactions]
    assert ledger + len(rejected) == 4 * 4 + 20  # deposit + 3 buys each, 20 later
    valuations = read_topic(settings.kafka_bootstrap, settings.topics.valuations)
    assert valuations
    Valuation.model_validate_json(valuations[-1][3])

    # A replay of both topics from the beginning changes nothing anywhere.
    before = snapshot(settings, clickhouse)
    run_pipeline(settings, clickhouse)
    assert snapshot(settings, clickhouse) == before
