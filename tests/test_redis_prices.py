"""RedisPriceSink: the newest price per symbol lands in its hash and is
published as the market.prices document; an older one never overwrites."""

from __future__ import annotations

import time
from decimal import Decimal

import orjson
import redis

from flows.ingest.encode import dec, iso, price_doc
from flows.ingest.records import PriceRow
from schemas.topics import RedisKeys
from sinks.redis.prices import RedisPriceSink

REDIS_URL = "redis://127.0.0.1:6379/0"
T0 = 1_767_225_600_000


def test_newest_price_per_symbol_is_stored_and_published(redis_prefix: str) -> None:
    keys = RedisKeys(redis_prefix)
    client = redis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe(keys.price_channel("*"))
    pubsub.get_message(timeout=1.0)  # the subscription confirmation
    part = RedisPriceSink(REDIS_URL, redis_prefix).build("prices", 0, 1)
    older = PriceRow("AAPL", Decimal("189.25"), T0, "alpha", "USD", Decimal(300))
    newest = PriceRow("AAPL", Decimal("0.0000001"), T0 + 5, "beta", "EUR", None)
    other = PriceRow("MSFT", Decimal("411.2000"), T0 + 1, "alpha", "USD", Decimal("1.5"))
    part.write_batch([[older, newest], [other]])
    part.write_batch([[older]])  # a replay of an older price: no write, no message
    stored = client.hgetall(keys.price("AAPL"))
    assert stored == {
        b"version": str(T0 + 5).encode(),
        b"price": dec(newest.price).encode(),
        b"ts": iso(newest.ts_ms).encode(),
        b"provider": b"beta",
        b"currency": b"EUR",
    }
    messages: list[bytes] = []
    deadline = time.monotonic() + 5
    while len(messages) < 2 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.2)
        if message is not None:
            messages.append(message["data"])
    extra = pubsub.get_message(timeout=0.5)  # the replayed older price must not publish
    assert extra is None
    assert sorted(messages) == sorted(orjson.dumps(price_doc(r)) for r in (newest, other))
    part.close()
    pubsub.close()
    client.close()
