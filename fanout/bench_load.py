"""Load generators for ``fanout.bench``, each run in its own process: websocket
client groups, the Redis publisher, a naive broadcast server (the baseline)
and an HTTP request generator. Nothing here runs at import time.

Clients (``fanout.bench_client``) negotiate permessage-deflate, as browsers
do. Every published update carries ``sent`` (epoch seconds at publish); a
client's latency sample is its receipt time minus ``sent``, so it spans
Redis, the server and the client's own queueing (the client's CPU is
reported next to it for that reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from array import array
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection, broadcast, serve

from fanout.bench_client import BenchClient
from fanout.pubsub import RedisAddress, encode_command
from fanout.testing import KeepAliveClient

CONNECT_CHUNK = 50  # connections opened at once per process (listen backlog)
NEVER = float("inf")


@dataclass(frozen=True)
class ClientSpec:
    """One client: its token and the channels it subscribes to."""

    token: str
    channels: list[str]


@dataclass
class ClientStats:
    """What one client process saw inside the measured window [t0, t1)."""

    t0: float = NEVER
    t1: float = NEVER
    frames: int = 0
    updates: int = 0
    connected: int = 0
    failed: int = 0
    refused: int = 0  # channels answered with an error instead of a snapshot
    latency: array = field(default_factory=lambda: array("d"))

    def record(self, frame: str | bytes, now: float) -> None:
        data = orjson.loads(frame)
        messages = data["messages"] if data.get("type") == "batch" else (data,)
        inside = self.t0 <= now < self.t1
        self.frames += inside
        for message in messages:
            if message.get("type") != "update":
                continue
            self.updates += inside
            payload = message.get("payload")
            sent = payload.get("sent") if isinstance(payload, dict) else None
            if sent is not None and self.t0 <= sent < self.t1:
                self.latency.append(now - sent)


async def _connect(
    port: int, spec: ClientSpec, snapshots: bool, stats: ClientStats
) -> BenchClient | None:
    """One subscribed client (``fanout.bench_client``), or None (counted)."""
    loop = asyncio.get_running_loop()
    host = f"127.0.0.1:{port}"
    try:
        _, client = await loop.create_connection(
            lambda: BenchClient(host, spec.token, spec.channels, snapshots, stats.record),
            "127.0.0.1",
            port,
        )
        stats.refused += await asyncio.wait_for(client.done, 60)
    except (OSError, TimeoutError) as exc:  # ConnectionError is an OSError
        stats.failed += 1
        if stats.failed == 1:
            print(f"bench client failed: {exc!r}", flush=True)
        return None
    stats.connected += 1
    return client


def client_group(
    port: int, specs: list[ClientSpec], snapshots: bool, ready_q: Any, cmd_q: Any, out_q: Any
) -> None:
    """Process entry: connect ``specs``, report readiness, measure the window
    the parent sends (t0, t1, drain_s), then report ``ClientStats``; a client
    the server dropped before the end counts as failed."""

    async def main() -> None:
        stats = ClientStats()
        clients: list[BenchClient] = []
        for start in range(0, len(specs), CONNECT_CHUNK):
            chunk = specs[start : start + CONNECT_CHUNK]
            made = await asyncio.gather(*(_connect(port, s, snapshots, stats) for s in chunk))
            clients += [c for c in made if c is not None]
        ready_q.put((stats.connected, stats.failed, stats.refused))
        loop = asyncio.get_running_loop()
        stats.t0, stats.t1, drain_s = await loop.run_in_executor(None, cmd_q.get)
        await asyncio.sleep(max(0.0, stats.t1 + drain_s - time.time()))
        stats.failed += sum(c.transport is None or c.transport.is_closing() for c in clients)
        for client in clients:
            if client.transport is not None:
                client.transport.close()  # FIN, not RST: no send errors logged
        out_q.put((stats.frames, stats.updates, stats.failed, stats.latency.tobytes()))

    asyncio.run(main())


async def publish(
    redis_url: str, prefix: str, symbols: int, rate: float, portfolios: int, until: float
) -> tuple[int, int]:
    """Price updates round-robin over ``symbols`` at ``rate``/s, and one
    valuation per portfolio per second, until epoch ``until``; every 5 ms the
    updates due by then go out in one write. Returns (prices, valuations).

    Raw RESP on a socket (redis-py costs ~60 µs per PUBLISH here, which
    would make the publisher, not the server, the bottleneck)."""
    address = RedisAddress.from_url(redis_url)
    reader, writer = await asyncio.open_connection(address.host, address.port)
    if address.password is not None:
        user = (address.username,) if address.username else ()
        writer.write(encode_command("AUTH", *user, address.password))
        await reader.readline()
    drain = asyncio.create_task(_discard(reader))  # PUBLISH replies: not needed
    prices = valuations = 0
    versions: dict[str, int] = {}  # per channel: epoch ms, +1 if it would repeat
    start = time.monotonic()
    while (now := time.time()) < until:
        elapsed = time.monotonic() - start
        due_prices = int(elapsed * rate) - prices
        due_values = int(elapsed * portfolios) - valuations
        commands = []
        for i in range(prices, prices + due_prices):
            symbol = f"S{i % symbols}"
            version = _version(versions, symbol, now)
            body = {"symbol": symbol, "price": f"{100 + i % 97}.25", "currency": "USD",
                    "provider": "bench", "version": version, "sent": now}  # fmt: skip
            commands.append(
                encode_command("PUBLISH", f"{prefix}:prices:{symbol}", orjson.dumps(body))
            )
        for i in range(valuations, valuations + due_values):
            pid = f"p{i % portfolios}"
            version = _version(versions, pid, now)
            body = {"portfolio_id": pid, "market_value": "1000", "version": version, "sent": now}
            commands.append(
                encode_command("PUBLISH", f"{prefix}:portfolio:{pid}", orjson.dumps(body))
            )
        writer.write(b"".join(commands))
        prices, valuations = prices + due_prices, valuations + due_values
        await asyncio.sleep(0.005)
    writer.close()
    drain.cancel()
    return prices, valuations


def _version(versions: dict[str, int], key: str, now: float) -> int:
    """Epoch ms of the publish (the server's end-to-end latency histogram
    reads it), strictly increasing per channel."""
    version = max(int(now * 1000), versions.get(key, 0) + 1)
    versions[key] = version
    return version


async def _discard(reader: asyncio.StreamReader) -> None:
    while await reader.read(1 << 20):
        pass


def naive_server(redis_url: str, prefix: str, compression: bool, ports: Any) -> None:
    """Process entry: the baseline. No auth, no conflation, no pacing: every
    Redis message becomes one frame, broadcast to every subscriber of its
    channel (``websockets.broadcast``: no backpressure, buffers grow)."""
    # It keeps broadcasting to clients that hung up at the end of the window;
    # asyncio's "socket.send() raised exception" for each would flood stderr.
    logging.getLogger("asyncio").setLevel(logging.ERROR)

    async def main() -> None:
        subscribers: defaultdict[str, set[ServerConnection]] = defaultdict(set)
        cut = len(prefix) + 1

        async def handler(ws: ServerConnection) -> None:
            mine: list[str] = []
            try:
                async for raw in ws:
                    message = orjson.loads(raw)
                    if message.get("type") == "subscribe":
                        for name in message["channels"]:
                            subscribers[f"{prefix}:{name}"].add(ws)
                            mine.append(f"{prefix}:{name}")
                        reply = {"type": "subscribed", "channels": message["channels"]}
                        await ws.send(orjson.dumps(reply).decode())
            finally:
                for channel in mine:
                    subscribers[channel].discard(ws)

        client = aioredis.Redis.from_url(redis_url)
        pubsub = client.pubsub()
        await pubsub.psubscribe(f"{prefix}:*")
        deflate = "deflate" if compression else None
        async with serve(handler, "127.0.0.1", 0, compression=deflate, max_size=2**20) as server:
            ports.put(server.sockets[0].getsockname()[1])
            seq = 0
            async for message in pubsub.listen():
                if message["type"] != "pmessage":
                    continue
                channel = message["channel"].decode()
                targets = subscribers.get(channel)
                if targets:
                    seq += 1
                    frame = b"".join((b'{"type":"update","channel":"', channel[cut:].encode(),
                                      b'","seq":', str(seq).encode(), b',"payload":',
                                      message["data"], b"}"))  # fmt: skip
                    broadcast(targets, frame, text=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def http_load(
    port: int,
    path: str,
    tokens: list[str],
    rate: float,
    seconds: float,
    out: Any,
    connections: int = 32,
) -> None:
    """Process entry: ``GET path`` at ``rate``/s over ``connections`` kept-alive
    connections (as browsers and API clients do). Open loop: a request is due
    at its slot whether or not a connection is free, and its latency counts
    from then (waiting for a connection included). Puts (latencies, statuses,
    elapsed, its own CPU seconds)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pool: asyncio.Queue[KeepAliveClient] = asyncio.Queue()
        for _ in range(connections):
            pool.put_nowait(await KeepAliveClient.connect(port))
        latencies: list[float] = []
        statuses: list[int] = []

        async def one(token: str, due: float) -> None:
            conn = await pool.get()
            try:
                status = (await conn.get(path, token))[0]
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                status = 0
                conn.close()
                conn = await KeepAliveClient.connect(port)
            latencies.append(loop.time() - due)
            statuses.append(status)
            pool.put_nowait(conn)

        tasks: list[asyncio.Task[None]] = []
        total, start, cpu0 = int(rate * seconds), loop.time(), time.process_time()
        while len(tasks) < total:
            due = min(total, int((loop.time() - start) * rate) + 1)
            for i in range(len(tasks), due):
                task = one(tokens[i % len(tokens)], start + i / rate)
                tasks.append(asyncio.create_task(task))
            await asyncio.sleep(0.001)
        await asyncio.gather(*tasks)
        elapsed = loop.time() - start
        while not pool.empty():
            pool.get_nowait().close()
        out.put((latencies, statuses, elapsed, time.process_time() - cpu0))

    asyncio.run(main())
