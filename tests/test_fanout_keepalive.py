"""HTTP/1.1 keep-alive on the fan-out port (``fanout.front``): several
requests per connection, pipelining in order, the connection rules, bad
requests, and websocket upgrades on the same port (real server, Redis, PG)."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import socket
import time

import orjson
import pytest
import redis
from prometheus_client import REGISTRY

from fanout.auth import mint_token
from fanout.config import FanoutConfig
from fanout.front import HttpFront
from fanout.server import FanoutServer
from fanout.testing import (
    KeepAliveClient,
    add_portfolios,
    client,
    running_server,
    temporary_database,
)

SECRET = "keepalive-test-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def dsn():
    with temporary_database() as dsn:
        add_portfolios(dsn, [("p1", "alice"), ("q1", "bob")])
        yield dsn


@pytest.fixture
def prefix(redis_prefix):
    """conftest's key prefix (deleted afterwards) with two dashboards."""
    r = redis.Redis()
    r.set(f"{redis_prefix}:dashboard:alice", orjson.dumps({"user_id": "alice", "cards": {"a": {}}}))
    r.set(f"{redis_prefix}:dashboard:bob", orjson.dumps({"user_id": "bob", "cards": {"b": {}}}))
    r.close()
    return redis_prefix


def _config(dsn: str, prefix: str, **extra) -> FanoutConfig:
    return FanoutConfig("127.0.0.1", 0, "redis://127.0.0.1:6379/0", prefix, dsn, SECRET, **extra)


def _run(coro, timeout: float = 20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _get(path: str, token: str | None = None, extra: str = "", version: str = "1.1") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/{version}\r\nHost: x\r\n{auth}{extra}\r\n".encode()


def test_one_connection_serves_many_requests_each_as_its_own_caller(dsn, prefix):
    alice, bob = mint_token(SECRET, "alice", 60), mint_token(SECRET, "bob", 60)

    async def scenario():
        async with running_server(_config(dsn, prefix)) as server:
            conn = await KeepAliveClient.connect(server.port)
            for _ in range(3):
                status, headers, body = await conn.get("/v1/dashboard", alice)
                assert status == 200 and headers["connection"] == "keep-alive"
                assert orjson.loads(body)["user_id"] == "alice"
                assert (await conn.get("/v1/dashboard"))[0] == 401
                status, _, body = await conn.get("/v1/dashboard", bob)
                assert orjson.loads(body)["cards"] == {"b": {}}
                assert (await conn.get("/v1/portfolios/p1", bob))[0] == 404
                assert (await conn.get("/healthz"))[0] == 200
            # Pipelined: all three written at once, answered in order.
            conn.send_raw(_get("/v1/dashboard", bob) + _get("/nope") + _get("/v1/dashboard", alice))
            answers = [await conn.response() for _ in range(3)]
            assert [a[0] for a in answers] == [200, 404, 200]
            assert [orjson.loads(answers[i][2])["user_id"] for i in (0, 2)] == ["bob", "alice"]
            conn.close()

    _run(scenario())


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (_get("/healthz", extra="Connection: close\r\n"), 200),
        (_get("/healthz", version="1.0"), 200),
        (b"GET /healthz HTTP/2.0\r\n\r\n", 400),
        (b"GET healthz HTTP/1.1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nX: 1\r\n folded\r\n\r\n", 400),
        (b"POST /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 400),
        (b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n", 431),
        (b"GET /healthz HTTP/1.0\r\n\r\n", 200),  # HTTP/1.0 needs no Host
        (b"GET /healthz HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /health\x00z HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /health\x7fz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /health\rz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\x7fb\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400),
    ],
)
def test_connection_closes_when_asked_or_when_the_request_cannot_be_framed(
    dsn, prefix, request_bytes, status
):
    async def scenario():
        async with running_server(_config(dsn, prefix)) as server:
            conn = await KeepAliveClient.connect(server.port)
            conn.send_raw(request_bytes)
            got, headers, _ = await conn.response()
            assert (got, headers["connection"]) == (status, "close")
            assert await conn.at_eof()

    _run(scenario())


def test_http_10_keep_alive_and_post_without_body(dsn, prefix):
    async def scenario():
        async with running_server(_config(dsn, prefix)) as server:
            conn = await KeepAliveClient.connect(server.port)
            conn.send_raw(_get("/healthz", version="1.0", extra="Connection: keep-alive\r\n"))
            assert (await conn.response())[1]["connection"] == "keep-alive"
            conn.send_raw(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            assert (await conn.response())[0] == 405
            assert (await conn.get("/healthz"))[0] == 200

    _run(scenario())


def test_idle_and_slow_connections_are_closed(dsn, prefix):
    async def scenario():
        async with running_server(_config(dsn, prefix, http_idle_timeout_s=0.3)) as server:
            idle = await KeepAliveClient.connect(server.port)
            assert (await idle.get("/healthz"))[0] == 200
            slow = await KeepAliveClient.connect(server.port)
            slow.send_raw(b"GET /healthz HTTP/1.1\r\nHost:")  # never finished
            assert await idle.at_eof(2.0)
            assert await slow.at_eof(2.0)

    _run(scenario())


def test_shutdown_closes_keep_alive_connections(dsn, prefix):
    async def scenario():
        async with running_server(_config(dsn, prefix)) as server:
            conn = await KeepAliveClient.connect(server.port)
            assert (await conn.get("/healthz"))[0] == 200
        assert await conn.at_eof(2.0)

    _run(scenario())


def _upgrade(path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def test_websocket_upgrade_on_the_same_port_and_connection(dsn, prefix):
    alice = mint_token(SECRET, "alice", 60)

    async def scenario():
        async with running_server(_config(dsn, prefix)) as server:
            conn = await KeepAliveClient.connect(server.port)
            assert (await conn.get("/v1/dashboard", alice))[0] == 200
            conn.send_raw(_upgrade("/ws"))  # after a plain request, same connection
            status, headers, _ = await conn.response()
            assert status == 101 and headers["upgrade"].lower() == "websocket"
            other = await KeepAliveClient.connect(server.port)
            other.send_raw(_upgrade("/v1/dashboard"))
            assert (await other.response())[0] == 404
            async with client(server.port, alice) as ws:  # the usual client still works
                await ws.send({"type": "subscribe", "channels": ["portfolio:q1"]})
                reply = await ws.recv_until(lambda m: m["type"] == "subscribed")
                assert reply["denied"] == [{"channel": "portfolio:q1", "code": "forbidden"}]

    _run(scenario())


def test_dashboard_reads_use_the_configured_database_and_survive_a_lost_connection(dsn):
    prefix, name = f"fo_ka_{secrets.token_hex(4)}", f"fo-ka-{secrets.token_hex(4)}"
    db3 = redis.Redis(db=3)
    db3.set(f"{prefix}:dashboard:alice", orjson.dumps({"user_id": "alice", "cards": {"c": {}}}))
    alice = mint_token(SECRET, "alice", 60)
    config = FanoutConfig(
        "127.0.0.1", 0, "redis://127.0.0.1:6379/3", prefix, dsn, SECRET, redis_client_name=name
    )

    async def scenario():
        async with running_server(config) as server:
            conn = await KeepAliveClient.connect(server.port)
            status, _, body = await conn.get("/v1/dashboard", alice)
            assert (status, orjson.loads(body)["cards"]) == (200, {"c": {}})
            killed = 0
            for info in db3.client_list():
                if info["name"] == name and info["db"] == "3":
                    killed += db3.client_kill_filter(_id=info["id"])
            assert killed >= 1
            await asyncio.sleep(0.1)
            status, _, body = await conn.get("/v1/dashboard", alice)  # reconnected
            assert (status, orjson.loads(body)["cards"]) == (200, {"c": {}})

    try:
        _run(scenario())
    finally:
        db3.delete(f"{prefix}:dashboard:alice")
        db3.close()


def test_requests_sent_before_the_client_shuts_down_its_side_are_answered(dsn, prefix):
    async def scenario():
        async with running_server(_config(dsn, prefix)) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(_get("/healthz") + _get("/nope"))
            writer.write_eof()
            data = await asyncio.wait_for(reader.read(), 5)  # until the server closes
            assert data.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 404 " in data
            writer.close()

    _run(scenario())


def _fronts(server: FanoutServer) -> set[HttpFront]:
    """The server's open keep-alive connections (white-box: flow control is
    not observable from a client that must not read)."""
    assert server._front is not None
    return server._front.open


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _until(predicate, what: str, deadline_s: float = 10.0) -> None:
    """Poll ``predicate``; the deadline only turns a hang into a failure."""
    deadline = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _non_reader(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection with a tiny receive buffer (fixed before connecting, so the
    kernel cannot grow it): a few answers fill it, then the server's side."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def _drain_until_closed(reader: asyncio.StreamReader) -> None:
    try:
        while await asyncio.wait_for(reader.read(1 << 16), 10):
            pass
    except ConnectionResetError:
        pass  # aborted: the reset may overtake the unread answers


def test_a_client_that_stops_reading_is_aborted(dsn, prefix):
    aborted = "folio_fanout_http_closes_total"

    async def scenario():
        async with running_server(_config(dsn, prefix, http_idle_timeout_s=0.5)) as server:
            before = _sample(aborted, reason="slow_reader")
            reader, writer = await _non_reader(server.port)
            writer.write(_get("/metrics") * 2000)  # megabytes of answers, never read
            await _until(lambda: _sample(aborted, reason="slow_reader") > before, "the abort")
            await _until(lambda: not _fronts(server), "the connection to go")
            await _drain_until_closed(reader)
            writer.close()

    _run(scenario())


def test_shutdown_aborts_a_client_that_stops_reading(dsn, prefix):
    config = _config(dsn, prefix, http_idle_timeout_s=60, close_timeout_s=0.3)

    async def scenario():
        async with running_server(config) as server:
            before = _sample("folio_fanout_http_closes_total", reason="shutdown")
            reader, writer = await _non_reader(server.port)
            writer.write(_get("/metrics") * 2000)
            await _until(
                lambda: any(f._writable is not None for f in _fronts(server)),
                "the server to block writing",
            )
        # shutdown returned (the _run deadline fails a hang) and aborted the connection
        assert _sample("folio_fanout_http_closes_total", reason="shutdown") > before
        await _drain_until_closed(reader)
        writer.close()

    _run(scenario())


def test_reading_pauses_while_pipelined_requests_wait_and_all_are_answered_in_order(dsn, prefix):
    alice = mint_token(SECRET, "alice", 60)
    release = asyncio.Event()

    async def history(symbol: str, span: str) -> list[dict]:
        await release.wait()  # holds the first request while the rest pile up
        return [{"symbol": symbol}]

    async def scenario():
        async with running_server(_config(dsn, prefix), history) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(_get("/v1/history/AAA?range=1m", alice))
            pad = "X-Pad: " + "a" * 1000 + "\r\n"
            paths = ["/healthz" if n % 2 else "/nope" for n in range(2000)]  # ~2 MB
            writer.write(b"".join(_get(path, extra=pad) for path in paths))
            await _until(lambda: len(_fronts(server)) == 1, "the connection")
            front = next(iter(_fronts(server)))
            await _until(lambda: front._reading_paused, "reading to pause")
            assert len(front._buffer) < 1_000_000  # paused: most of it still in the socket
            release.set()
            conn = KeepAliveClient(reader, writer)
            assert (await conn.response())[0] == 200
            statuses = [(await conn.response())[0] for _ in paths]
            assert statuses == [200 if path == "/healthz" else 404 for path in paths]
            assert not front._reading_paused
            conn.close()

    _run(scenario())


def test_front_failures_are_counted(dsn, prefix):
    def count(status: str) -> float:
        return _sample("folio_fanout_http_requests_total", route="invalid", status=status)

    async def scenario():
        async with running_server(_config(dsn, prefix)) as server:
            before = count("400")
            conn = await KeepAliveClient.connect(server.port)
            conn.send_raw(b"GET /healthz HTTP/1.1\r\n\r\n")
            assert (await conn.response())[0] == 400
            assert count("400") == before + 1
            assert await conn.at_eof()

    _run(scenario())


def test_connections_beyond_the_limit_are_refused_until_one_closes(dsn, prefix):
    async def scenario():
        async with running_server(_config(dsn, prefix, max_http_connections=2)) as server:
            held = [await KeepAliveClient.connect(server.port) for _ in range(2)]
            for conn in held:
                assert (await conn.get("/healthz"))[0] == 200
            extra = await KeepAliveClient.connect(server.port)
            status, headers, _ = await extra.response()  # refused before any request
            assert (status, headers["connection"]) == (503, "close")
            assert await extra.at_eof()
            held[0].close()
            await _until(lambda: len(_fronts(server)) < 2, "the closed connection to go")
            again = await KeepAliveClient.connect(server.port)
            assert (await again.get("/healthz"))[0] == 200
            assert (await held[1].get("/healthz"))[0] == 200

    _run(scenario())
