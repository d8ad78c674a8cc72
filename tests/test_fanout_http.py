"""HTTP on the fan-out port: health, metrics, the static page and the
authenticated JSON reads (real server, Redis and Postgres)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import orjson
import psycopg
import pytest
import redis

from fanout.auth import mint_token
from fanout.config import FanoutConfig
from fanout.httpapi import HISTORY_MISSING
from fanout.testing import add_portfolios, http_get, running_server, temporary_database

SECRET = "http-test-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def dsn():
    with temporary_database() as dsn:
        add_portfolios(dsn, [("p1", "alice"), ("p2", "alice"), ("q1", "bob")])
        with psycopg.connect(dsn, autocommit=True) as conn:
            for portfolio_id, symbol, quantity in [("p1", "AAPL", 3), ("p1", "MSFT", 0)]:
                conn.execute(
                    "INSERT INTO positions (portfolio_id, symbol, quantity, cost_basis, version)"
                    " VALUES (%s, %s, %s, 0, 1)",
                    (portfolio_id, symbol, quantity),
                )
        yield dsn


@pytest.fixture
def prefix(redis_prefix):
    """conftest's key prefix (deleted afterwards) with a price, two
    valuations and alice's dashboard in Redis."""
    prefix = redis_prefix
    r = redis.Redis()
    price: dict[Any, Any] = {
        "price": "189.5",
        "ts": "2024-05-01T00:00:00Z",
        "provider": "alpha",
        "currency": "USD",
        "version": "1714521600000",
    }
    r.hset(f"{prefix}:price:AAPL", mapping=price)
    valuation = {"portfolio_id": "p1", "user_id": "alice", "market_value": "568.5", "version": 3}
    r.set(f"{prefix}:valuation:p1", orjson.dumps(valuation))
    r.set(f"{prefix}:valuation:q1", orjson.dumps({"portfolio_id": "q1", "user_id": "bob"}))
    r.set(f"{prefix}:dashboard:alice", orjson.dumps({"user_id": "alice", "cards": {"x": {}}}))
    r.close()
    return prefix


def _config(dsn: str, prefix: str, redis_url: str = "redis://127.0.0.1:6379/0") -> FanoutConfig:
    return FanoutConfig("127.0.0.1", 0, redis_url, prefix, dsn, SECRET)


def _run(coro, timeout: float = 20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _history(symbol: str, span: str) -> list[dict]:
    if span == "9y":
        raise ValueError("range 9y is not supported")
    return [{"symbol": symbol, "range": span, "close": Decimal("1.50")}]


def test_public_routes_health_metrics_and_page(dsn, prefix):
    async def scenario():
        async with running_server(_config(dsn, prefix)) as server:
            status, _, body = await http_get(server.port, "/healthz")
            assert (status, orjson.loads(body)) == (200, {"status": "ok"})
            status, headers, body = await http_get(server.port, "/metrics")
            assert status == 200 and headers["content-type"].startswith("text/plain")
            assert b"folio_fanout_connections" in body
            assert b"folio_fanout_delivery_latency_seconds" in body
            status, headers, body = await http_get(server.port, "/")
            assert status == 200 and headers["content-type"].startswith("text/html")
            assert b"<script" in body and b"http://" not in body.replace(b"http://www.w3", b"")
            assert (await http_get(server.port, "/ws"))[0] == 426
            assert (await http_get(server.port, "/nope"))[0] == 404
            assert (await http_get(server.port, "/healthz", method="POST"))[0] == 405

    _run(scenario())


def test_healthz_fails_when_redis_is_unreachable(dsn, prefix):
    async def scenario():
        async with running_server(_config(dsn, prefix, "redis://127.0.0.1:1/0")) as server:
            status, _, body = await http_get(server.port, "/healthz")
            assert status == 503 and b"redis" in body

    _run(scenario())


def test_v1_requires_a_bearer_token(dsn, prefix):
    async def scenario():
        async with running_server(_config(dsn, prefix)) as server:
            for path in ["/v1/dashboard", "/v1/portfolios", "/v1/portfolios/p1",
                         "/v1/prices?symbols=AAPL", "/v1/history/AAPL"]:  # fmt: skip
                for token in [
                    None,
                    "garbage",
                    mint_token("another-secret-0123456789abcdef-xyz", "alice", 60),
                ]:
                    status, headers, _ = await http_get(server.port, path, token)
                    assert status == 401, (path, token)
                    assert headers["www-authenticate"].startswith("Bearer")

    _run(scenario())


def test_v1_reads_are_scoped_to_the_caller(dsn, prefix):
    alice, bob = mint_token(SECRET, "alice", 60), mint_token(SECRET, "bob", 60)

    async def get(port, path, token):
        status, _, body = await http_get(port, path, token)
        return status, orjson.loads(body)

    async def scenario():
        async with running_server(_config(dsn, prefix)) as server:
            port = server.port
            assert await get(port, "/v1/dashboard", alice) == (
                200,
                {"user_id": "alice", "cards": {"x": {}}},
            )
            assert await get(port, "/v1/dashboard", bob) == (200, {"user_id": "bob", "cards": {}})
            status, listing = await get(port, "/v1/portfolios", alice)
            assert status == 200
            assert [(p["portfolio_id"], p["symbols"]) for p in listing["portfolios"]] == [
                ("p1", ["AAPL"]),
                ("p2", []),
            ]
            status, body = await get(port, "/v1/portfolios/p1", alice)
            assert status == 200 and body["valuation"]["market_value"] == "568.5"
            assert await get(port, "/v1/portfolios/p2", alice) == (
                200,
                {"portfolio_id": "p2", "valuation": None},
            )
            assert (await get(port, "/v1/portfolios/q1", alice))[0] == 404
            assert (await get(port, "/v1/portfolios/P1", alice))[0] == 404
            assert (await get(port, "/v1/portfolios/p1", bob))[0] == 404
            status, body = await get(port, "/v1/prices?symbols=aapl,MSFT", alice)
            assert status == 200
            assert body["prices"]["AAPL"]["price"] == "189.5"
            assert body["prices"]["MSFT"] is None
            assert (await get(port, "/v1/prices?symbols=%C5%BFPY", alice))[0] == 400
            assert (await get(port, "/v1/prices", alice))[0] == 400

    _run(scenario())


def test_history_is_delegated_or_explains_what_is_missing(dsn, prefix):
    token = mint_token(SECRET, "alice", 60)

    async def scenario():
        async with running_server(_config(dsn, prefix)) as server:
            status, _, body = await http_get(server.port, "/v1/history/AAPL?range=1m", token)
            assert (status, orjson.loads(body)) == (503, {"error": HISTORY_MISSING})
        async with running_server(_config(dsn, prefix), history=_history) as server:
            status, _, body = await http_get(server.port, "/v1/history/aapl?range=5d", token)
            assert status == 200
            assert orjson.loads(body) == {
                "symbol": "AAPL",
                "range": "5d",
                "points": [{"symbol": "AAPL", "range": "5d", "close": "1.50"}],
            }
            assert (await http_get(server.port, "/v1/history/AAPL?range=9y", token))[0] == 400
            assert (await http_get(server.port, "/v1/history/AAPL?range=;drop", token))[0] == 400
            assert (await http_get(server.port, "/v1/history/%C4%B1BM", token))[0] == 400

    _run(scenario())
