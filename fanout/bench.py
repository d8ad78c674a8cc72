"""Fan-out benchmark: ``python -m fanout.bench --clients 500``.

The server runs in its own process (its CPU time is what is reported); the
clients and the Redis publisher share this one. Prices only, so Postgres is
never queried. Reports deliveries/s, server CPU per delivery, conflation and
the publish-to-receive latency the clients saw (median and p99).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import statistics
import time
from typing import Any

import orjson
import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from fanout.auth import mint_token
from fanout.config import FanoutConfig
from fanout.server import ServerReady, run_server
from fanout.testing import http_get

SECRET = "bench-secret-0123456789abcdef-0123456789"


def _serve(config: FanoutConfig, ports: Any) -> None:
    async def main() -> None:
        ready = ServerReady()
        task = asyncio.create_task(run_server(config, ready=ready))
        await ready.wait()
        ports.put(ready.port)
        await task

    asyncio.run(main())


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _server_counts(port: int) -> dict[str, float]:
    """Server-side totals from /metrics (what it wrote, not what clients read)."""
    _, _, body = await http_get(port, "/metrics")
    wanted = {
        "folio_fanout_messages_delivered_total": "delivered",
        "folio_fanout_frames_total": "frames",
        "folio_fanout_messages_conflated_total": "conflated",
        "folio_fanout_redis_messages_total": "redis",
    }
    counts = dict.fromkeys(wanted.values(), 0.0)
    for line in body.decode().splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            counts[wanted[name]] = float(value)
    return counts


async def _client(port: int, channels: list[str], compression: bool, lat: list[float]) -> int:
    received = 0
    token = mint_token(SECRET, "bench", 600)
    async with connect(
        f"ws://127.0.0.1:{port}/ws", compression="deflate" if compression else None
    ) as ws:
        await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
        await ws.send(orjson.dumps({"type": "subscribe", "channels": channels}).decode())
        try:
            async for frame in ws:
                data = orjson.loads(frame)
                for message in data["messages"] if data["type"] == "batch" else [data]:
                    if message["type"] == "update":
                        received += 1
                        lat.append(time.time() - message["payload"]["sent"])
        except asyncio.CancelledError:
            pass
    return received


async def _publish(args: argparse.Namespace, prefix: str) -> int:
    client = aioredis.Redis.from_url(args.redis_url)
    sent, version, period = 0, 0, 1.0 / args.rate
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        version += 1
        async with client.pipeline(transaction=False) as pipe:
            for i in range(args.symbols):
                body = {"symbol": f"B{i}", "price": "1.5", "version": version, "sent": time.time()}
                pipe.publish(f"{prefix}:prices:B{i}", orjson.dumps(body))
            await pipe.execute()
        sent += args.symbols
        await asyncio.sleep(period)
    await client.aclose()
    return sent


async def _bench(args: argparse.Namespace, port: int, prefix: str, server_pid: int) -> None:
    lat: list[float] = []
    tasks = []
    for n in range(args.clients):
        channels = [f"prices:B{(n + k) % args.symbols}" for k in range(args.per_client)]
        tasks.append(asyncio.create_task(_client(port, channels, args.compression, lat)))
        if n % 50 == 49:
            await asyncio.sleep(0.05)  # do not trip the listen backlog
    await asyncio.sleep(1.0)
    before = await _server_counts(port)
    cpu0, t0 = _cpu_seconds(server_pid), time.monotonic()
    published = await _publish(args, prefix)
    await asyncio.sleep(0.5)
    cpu, wall = _cpu_seconds(server_pid) - cpu0, time.monotonic() - t0
    after = await _server_counts(port)
    server = {k: after[k] - before[k] for k in after}
    for task in tasks:
        task.cancel()
    received = sum(await asyncio.gather(*tasks))
    lat.sort()
    print(f"clients={args.clients} channels/client={args.per_client} symbols={args.symbols} "
          f"rate={args.rate}/s/symbol compression={args.compression} "
          f"conflation={args.conflation_ms}ms")  # fmt: skip
    delivered, frames = server["delivered"], server["frames"]
    print(f"published={published} server wrote {delivered / wall:,.0f} messages/s in "
          f"{frames / wall:,.0f} frames/s (conflated {server['conflated']:,.0f}); "
          f"clients read {received / wall:,.0f}/s")  # fmt: skip
    print(f"server cpu={cpu:.2f}s ({cpu / wall:.0%} of a core): "
          f"{cpu / max(delivered, 1) * 1e6:.1f} us/message, "
          f"{cpu / max(frames, 1) * 1e6:.1f} us/frame")  # fmt: skip
    if lat:
        p99 = lat[int(len(lat) * 0.99)]
        print(f"latency median={statistics.median(lat) * 1e3:.1f}ms p99={p99 * 1e3:.1f}ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--per-client", type=int, default=5)
    parser.add_argument("--rate", type=float, default=10.0, help="updates/s per symbol")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--conflation-ms", type=int, default=250)
    parser.add_argument("--compression", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    prefix = f"bench_{secrets.token_hex(4)}"
    config = FanoutConfig(
        "127.0.0.1", 0, args.redis_url, prefix, "postgresql://unused", SECRET,
        conflation_ms=args.conflation_ms, compression=args.compression,
        max_connections_per_user=args.clients + 1, max_messages_per_s=100,
    )  # fmt: skip
    ports: Any = multiprocessing.get_context("spawn").Queue()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(config, ports))
    server.start()
    try:
        port = ports.get(timeout=10)
        assert server.pid is not None
        asyncio.run(_bench(args, port, prefix, server.pid))
    finally:
        server.terminate()
        server.join(10)


if __name__ == "__main__":
    main()
