"""Dashboard sinks against real Redis and Postgres: only written cards are
published, replays publish nothing and change nothing, versions never go
backwards, and the document is what the fan-out reads."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import psycopg
import pytest
import redis

from flows.dashboard.board import Card, DashboardUpdate, card_json
from schemas.topics import RedisKeys
from sinks.postgres.dashboards import dashboards_sink
from sinks.redis.dashboard import RedisDashboardSink
from tests.conftest import REDIS_URL


def card(version: int, **body: object) -> Card:
    return Card(version, card_json(version, version, orjson.dumps(body)))


def update(user: str, **cards: Card) -> DashboardUpdate:
    return DashboardUpdate(user, cards)


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(REDIS_URL)
    yield r
    r.close()


def next_message(pubsub: redis.client.PubSub) -> dict:
    while True:
        message = pubsub.get_message(timeout=5)
        assert message is not None, "no message"
        if message["type"] == "message":
            return orjson.loads(message["data"])


def test_redis_publishes_only_written_cards_and_replays_change_nothing(
    client: redis.Redis, redis_prefix: str
):
    keys = RedisKeys(redis_prefix)
    channel = keys.user_channel("u1")
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    part = RedisDashboardSink(REDIS_URL, redis_prefix).build("dash", 0, 1)

    first = [update("u1", performance=card(100, value="1"), activity=card(100, transactions=[]))]
    part.write_batch([first])
    assert next_message(pubsub) == {
        "type": "cards",
        "cards": {
            "activity": {"version": 100, "as_of": "1970-01-01T00:00:00.100Z", "transactions": []},
            "performance": {"version": 100, "as_of": "1970-01-01T00:00:00.100Z", "value": "1"},
        },
    }
    document = client.get(keys.dashboard("u1"))

    # The same batch again: nothing published (the marker comes first), same document.
    part.write_batch([first])
    client.publish(channel, b'{"type":"marker"}')
    assert next_message(pubsub) == {"type": "marker"}
    assert client.get(keys.dashboard("u1")) == document

    # One newer card and one older one: only the newer is written and published.
    part.write_batch([[update("u1", performance=card(200, value="2"), activity=card(50, x=1))]])
    assert next_message(pubsub) == {
        "type": "cards",
        "cards": {
            "performance": {"version": 200, "as_of": "1970-01-01T00:00:00.200Z", "value": "2"}
        },
    }
    doc = orjson.loads(client.get(keys.dashboard("u1")) or b"null")
    assert doc["user_id"] == "u1" and doc["version"] == 200
    assert doc["cards"]["performance"]["value"] == "2"
    assert doc["cards"]["activity"]["version"] == 100

    # Within one batch the newest version of a card wins, whatever the order.
    part.write_batch([[update("u1", income=card(400, n=4))], [update("u1", income=card(300, n=3))]])
    assert next_message(pubsub)["cards"]["income"]["n"] == 4
    assert orjson.loads(client.get(keys.dashboard("u1")) or b"null")["cards"]["income"]["n"] == 4
    part.close()
    pubsub.close()


def test_postgres_merges_cards_by_version_and_replays_change_nothing(pg_dsn: str):
    part = dashboards_sink(pg_dsn).build("dash", 0, 1)

    def stored() -> tuple[dict, int]:
        with psycopg.connect(pg_dsn) as conn:
            [(document, version)] = conn.execute(
                "SELECT document, version FROM dashboards WHERE user_id = 'u1'"
            ).fetchall()
        return document, version

    first = [update("u1", performance=card(100, value="1"), activity=card(100, items=[]))]
    part.write_batch([first])
    document, version = stored()
    assert version == 100 and set(document["cards"]) == {"performance", "activity"}
    assert document["cards"]["activity"] == {
        "version": 100,
        "as_of": "1970-01-01T00:00:00.100Z",
        "items": [],
    }

    part.write_batch([first])
    assert stored() == (document, version)

    part.write_batch(
        [[update("u1", performance=card(200, value="2"), activity=card(50, items=[1]))]]
    )
    document, version = stored()
    assert version == 200 and document["version"] == 200
    assert document["cards"]["performance"]["value"] == "2"
    assert document["cards"]["activity"]["items"] == []  # the older card lost

    part.write_batch([[update("u1", movers=card(150, gainers=[]))]])  # older than the doc
    document, version = stored()
    assert version == 200 and set(document["cards"]) == {"performance", "activity", "movers"}
    part.close()


def test_redis_splits_large_batches_into_calls(client: redis.Redis, redis_prefix: str):
    keys = RedisKeys(redis_prefix)
    part = RedisDashboardSink(REDIS_URL, redis_prefix, users_per_call=2).build("dash", 0, 1)
    users = [f"u{n}" for n in range(5)]
    part.write_batch([[update(u, movers=card(10 + n, n=n)) for n, u in enumerate(users)]])
    for n, user in enumerate(users):
        doc = orjson.loads(client.get(keys.dashboard(user)) or b"null")
        assert doc["user_id"] == user and doc["version"] == 10 + n
        assert list(doc["cards"]) == ["movers"] and doc["cards"]["movers"]["n"] == n
    part.close()
