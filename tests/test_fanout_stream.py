"""Streaming behaviour against a real server, Redis and Postgres: snapshot
then updates, sequence numbers and resync, conflation, slow clients,
limits and shutdown."""

from __future__ import annotations

import asyncio
import secrets
import socket
from typing import Any

import orjson
import pytest
import redis
from websockets.exceptions import ConnectionClosed, InvalidStatus

from fanout import metrics
from fanout.auth import mint_token
from fanout.config import FanoutConfig
from fanout.server import ServerReady, run_server
from fanout.testing import JsonClient, add_portfolios, client, running_server, temporary_database

SECRET = "stream-test-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def dsn():
    with temporary_database() as dsn:
        add_portfolios(dsn, [("p1", "alice")])
        yield dsn


@pytest.fixture
def prefix(redis_prefix):
    return redis_prefix  # conftest's: unique per test, deleted afterwards


@pytest.fixture
def r():
    client = redis.Redis()
    yield client
    client.close()


def _config(dsn: str, prefix: str, **overrides) -> FanoutConfig:
    settings = {"conflation_ms": 20, **overrides}
    return FanoutConfig("127.0.0.1", 0, "redis://127.0.0.1:6379/0", prefix, dsn, SECRET, **settings)


def _run(coro, timeout: float = 20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _set_price(
    r: redis.Redis, prefix: str, symbol: str, version: int, publish: bool = True
) -> None:
    """What the price flow does: write the hash, then publish."""
    price = {"price": f"{100 + version}.25", "ts": "2024-05-01T12:00:00+00:00"}
    fields: dict[Any, Any] = {
        **price,
        "provider": "alpha",
        "currency": "USD",
        "version": str(version),
    }
    r.hset(f"{prefix}:price:{symbol}", mapping=fields)
    if publish:
        body = {"symbol": symbol, **fields}
        r.publish(f"{prefix}:prices:{symbol}", orjson.dumps(body))


async def _close_code(c: JsonClient) -> int:
    try:
        while True:
            await c.recv(5)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None
        return exc.rcvd.code


def _version(message: dict) -> int:
    return int(message["payload"]["version"])


def test_snapshot_first_then_updates_in_order_with_contiguous_seq(dsn, prefix, r):
    _set_price(r, prefix, "AAPL", 1, publish=False)
    token = mint_token(SECRET, "alice", 60)

    async def scenario():
        async with running_server(_config(dsn, prefix)) as server, client(server.port, token) as c:
            await c.send({"type": "subscribe", "channels": ["prices:aapl"]})
            reply = await c.recv()
            assert reply == {"type": "subscribed", "channels": ["prices:AAPL"], "denied": []}

            async def publisher():
                for version in range(2, 41):
                    _set_price(r, prefix, "AAPL", version)
                    await asyncio.sleep(0.002)

            task = asyncio.create_task(publisher())
            first = await c.recv()
            assert (first["type"], first["seq"]) == ("snapshot", 1)
            messages = [first]
            while _version(messages[-1]) < 40:
                messages.append(await c.recv())
            await task
            assert all(m["type"] == "update" for m in messages[1:])
            assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
            versions = [_version(m) for m in messages]
            assert versions == sorted(set(versions))  # strictly increasing
            assert messages[-1]["payload"]["price"] == "140.25"

            # Resync: a snapshot request returns the stored state with the next seq.
            _set_price(r, prefix, "AAPL", 41, publish=False)
            await c.send({"type": "snapshot", "channel": "prices:AAPL"})
            resync = await c.recv()
            assert resync["type"] == "snapshot"
            assert resync["seq"] == messages[-1]["seq"] + 1
            assert resync["payload"]["version"] == "41"
            await c.send({"type": "snapshot", "channel": "portfolio:p1"})
            assert (await c.recv())["code"] == "not_subscribed"
            await c.send({"type": "unsubscribe", "channels": ["prices:AAPL"]})
            assert (await c.recv()) == {"type": "unsubscribed", "channels": ["prices:AAPL"]}

    _run(scenario())


def test_conflation_sends_only_the_latest_state_and_never_goes_back(dsn, prefix, r):
    token = mint_token(SECRET, "alice", 60)
    conflated_before = metrics.CONFLATED._value.get()

    async def scenario():
        config = _config(dsn, prefix, conflation_ms=400)
        async with running_server(config) as server, client(server.port, token) as c:
            await c.send({"type": "subscribe", "channels": ["prices:MSFT", "portfolio:p1"]})
            for _ in range(2):
                await c.recv_until(lambda m: m["type"] == "snapshot")
            # The snapshot frame just went out, so these arrive within one interval.
            for version in range(2, 30):
                _set_price(r, prefix, "MSFT", version)
            valuation = {
                "portfolio_id": "p1",
                "user_id": "alice",
                "market_value": "10",
                "version": 7,
            }
            r.publish(f"{prefix}:portfolio:p1", orjson.dumps(valuation))
            _set_price(r, prefix, "MSFT", 12)  # stale: older than what is pending
            first = await c.recv()
            second = await c.recv()
            by_channel = {m["channel"]: m for m in (first, second)}
            assert _version(by_channel["prices:MSFT"]) == 29
            assert by_channel["prices:MSFT"]["seq"] == 2
            assert by_channel["portfolio:p1"]["payload"] == valuation
            _set_price(r, prefix, "MSFT", 20)  # older than already sent: dropped
            _set_price(r, prefix, "MSFT", 30)
            nxt = await c.recv()
            assert (nxt["channel"], _version(nxt), nxt["seq"]) == ("prices:MSFT", 30, 3)

    _run(scenario())
    assert metrics.CONFLATED._value.get() - conflated_before >= 27


def test_user_channel_merges_cards_and_delivers_every_alert(dsn, prefix, r):
    token = mint_token(SECRET, "alice", 60)
    dashboard = {"user_id": "alice", "cards": {"income": {"version": 3, "total": "12.5"}}}
    r.set(f"{prefix}:dashboard:alice", orjson.dumps(dashboard))

    async def scenario():
        config = _config(dsn, prefix, conflation_ms=300)
        async with running_server(config) as server, client(server.port, token) as c:
            await c.send({"type": "subscribe", "channels": ["user"]})
            snapshot = await c.recv_until(lambda m: m["type"] == "snapshot")
            assert snapshot["payload"]["cards"] == dashboard["cards"]
            channel = f"{prefix}:user:alice"
            for n in range(1, 4):
                card = {"performance": {"version": n, "twr": f"0.0{n}"}}
                r.publish(channel, orjson.dumps({"type": "cards", "cards": card}))
                r.publish(channel, orjson.dumps({"type": "alert", "alert": {"n": n}}))
            r.publish(channel, orjson.dumps({"type": "cards", "cards": {"income": {"version": 2}}}))
            update = await c.recv()
            assert update["type"] == "update"
            assert update["payload"]["cards"] == {"performance": {"version": 3, "twr": "0.03"}}
            assert update["payload"]["alerts"] == [{"n": 1}, {"n": 2}, {"n": 3}]

    _run(scenario())


def test_blocked_client_is_disconnected_and_others_get_every_latest_value(dsn, prefix, r):
    token = mint_token(SECRET, "alice", 60)
    symbols = [f"S{i}" for i in range(4)]
    channels = [f"prices:{s}" for s in symbols]
    slow_before = metrics.SLOW_DISCONNECTS._value.get()
    pad = "x" * 60_000

    async def scenario():
        config = _config(dsn, prefix, conflation_ms=5, blocked_client_timeout_s=0.5)
        config = FanoutConfig(**{**config.__dict__, "close_timeout_s": 0.5})
        async with running_server(config) as server:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.port))
            sock.setblocking(False)
            async with (
                client(server.port, token, sock=sock, max_queue=1, compression=None) as slow,
                client(server.port, token) as fast,
            ):
                for c in (slow, fast):
                    await c.send({"type": "subscribe", "channels": channels})
                    for _ in channels:
                        await c.recv_until(lambda m: m["type"] == "snapshot")
                latest: dict[str, int] = {}

                async def read_fast():
                    while True:
                        message = await fast.recv(10)
                        if message["type"] == "update":
                            latest[message["channel"]] = _version(message)

                reader = asyncio.create_task(read_fast())
                version = 0
                # The slow client never reads; publish until the server drops it.
                while server.registry.count("alice") == 2:
                    version += 1
                    for s in symbols:
                        body = {"symbol": s, "price": "1", "version": str(version), "pad": pad}
                        r.publish(f"{prefix}:prices:{s}", orjson.dumps(body))
                    await asyncio.sleep(0.005)
                version += 1
                for s in symbols:  # after the disconnect: the others still get it
                    r.publish(f"{prefix}:prices:{s}", orjson.dumps({"version": str(version)}))
                while latest != dict.fromkeys(channels, version):
                    await asyncio.sleep(0.01)
                reader.cancel()
                with pytest.raises(ConnectionClosed):
                    while True:
                        await slow.recv(5)

    _run(scenario(), timeout=40)
    assert metrics.SLOW_DISCONNECTS._value.get() == slow_before + 1
    assert metrics.CLOSES.labels("4408")._value.get() >= 1


def test_oversize_frames_are_closed_with_1009(dsn, prefix):
    token = mint_token(SECRET, "alice", 60)

    async def scenario():
        async with running_server(_config(dsn, prefix, max_frame_bytes=2048)) as server:
            async with client(server.port, token) as c:
                await c.send({"type": "subscribe", "channels": ["x" * 5000]})
                assert await _close_code(c) == 1009
            async with client(server.port) as c:  # before authentication too
                await c.send({"type": "auth", "token": "y" * 5000})
                assert await _close_code(c) == 1009

    _run(scenario())


def test_limits_rate_subscriptions_connections_and_origin(dsn, prefix):
    token = mint_token(SECRET, "alice", 60)
    config = _config(
        dsn,
        prefix,
        max_messages_per_s=5,
        max_subscriptions=2,
        max_connections_per_user=2,
        allowed_origins=("https://folio.example",),
    )

    async def scenario():
        async with running_server(config) as server:
            async with client(server.port, token) as c:
                await c.send(
                    {"type": "subscribe", "channels": ["prices:A", "prices:B", "prices:C"]}
                )
                reply = await c.recv()
                assert reply["channels"] == ["prices:A", "prices:B"]
                assert reply["denied"] == [
                    {"channel": "prices:C", "code": "too_many_subscriptions"}
                ]
                for _ in range(30):
                    await c.send({"type": "ping"})
                assert await _close_code(c) == 1008
            async with (
                client(server.port, token),
                client(server.port, token),
                client(server.port) as third,
            ):
                await third.send({"type": "auth", "token": token})
                assert await _close_code(third) == 1013
            with pytest.raises(InvalidStatus) as info:
                async with client(server.port, origin="https://evil.example"):
                    pass
            assert info.value.response.status_code == 403
            async with client(server.port, token, origin="https://folio.example") as c:
                await c.send({"type": "ping"})
                assert (await c.recv())["type"] == "pong"

    _run(scenario())


def test_shutdown_tells_clients_to_reconnect_with_1012(dsn, prefix):
    token = mint_token(SECRET, "alice", 60)

    async def scenario():
        ready, stop = ServerReady(), asyncio.Event()
        task = asyncio.create_task(run_server(_config(dsn, prefix), ready=ready, stop=stop))
        await ready.wait()
        assert ready.port is not None and ready.server is not None
        assert ready.port == ready.server.port > 0
        async with client(ready.port, token) as c:
            await c.send({"type": "subscribe", "channels": ["user"]})
            await c.recv_until(lambda m: m["type"] == "snapshot")
            stop.set()
            assert await _close_code(c) == 1012
        await task

    _run(scenario())


def test_redis_pubsub_loss_is_followed_by_resubscribe_and_fresh_snapshots(dsn, prefix, r):
    token = mint_token(SECRET, "alice", 60)
    name = f"fanout-test-{secrets.token_hex(4)}"
    _set_price(r, prefix, "NVDA", 1, publish=False)

    def kill_own_pubsub_connection() -> None:
        """Only this server's pub/sub connection (by client name), nobody else's."""
        ours = [c for c in r.client_list() if c["name"] == name and int(c["sub"]) > 0]
        assert len(ours) == 1
        r.client_kill_filter(_id=ours[0]["id"])

    async def scenario():
        config = _config(dsn, prefix, redis_client_name=name)
        async with running_server(config) as server, client(server.port, token) as c:
            await c.send({"type": "subscribe", "channels": ["prices:NVDA"]})
            assert _version(await c.recv_until(lambda m: m["type"] == "snapshot")) == 1
            kill_own_pubsub_connection()
            _set_price(r, prefix, "NVDA", 2, publish=False)  # changed during the outage
            resync = await c.recv_until(lambda m: m["type"] == "snapshot")
            assert (_version(resync), resync["seq"]) == (2, 2)
            _set_price(r, prefix, "NVDA", 3)  # live again after the re-subscribe
            update = await c.recv_until(lambda m: m["type"] == "update")
            assert (_version(update), update["seq"]) == (3, 3)

    _run(scenario())
