"""The benchmark's own machinery: its bare websocket client against a real
server (upgrade, deflate, auth, subscribe, updates, refusals) and how the
parent reads its children (a dead child is reported at once)."""

from __future__ import annotations

import asyncio
import multiprocessing
import secrets
import sys
import time

import orjson
import pytest
import redis

from fanout.auth import mint_token
from fanout.bench_client import BenchClient
from fanout.bench_procs import BenchError, receive, start
from fanout.config import FanoutConfig
from fanout.testing import add_portfolios, running_server, temporary_database

SECRET = "bench-test-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def dsn():
    with temporary_database() as dsn:
        add_portfolios(dsn, [("p1", "alice")])
        yield dsn


def _connect(port: int, token: str, channels: list[str], frames: list[bytes]):
    loop = asyncio.get_running_loop()
    factory = lambda: BenchClient(  # noqa: E731
        f"127.0.0.1:{port}", token, channels, True, lambda data, now: frames.append(data)
    )
    return loop.create_connection(factory, "127.0.0.1", port)


@pytest.mark.parametrize("compression", [True, False])
def test_bench_client_subscribes_and_receives_updates(dsn, compression):
    prefix = f"fo_bench_{secrets.token_hex(4)}"
    config = FanoutConfig(
        "127.0.0.1", 0, "redis://127.0.0.1:6379/0", prefix, dsn, SECRET,
        conflation_ms=0, compression=compression,
    )  # fmt: skip
    r = redis.Redis()

    async def scenario():
        async with running_server(config) as server:
            frames: list[bytes] = []
            token = mint_token(SECRET, "alice", 60)
            channels = ["prices:AAA", "portfolio:p1", "portfolio:p9"]
            _, client = await _connect(server.port, token, channels, frames)
            assert await asyncio.wait_for(client.done, 10) == 1  # p9: not alice's
            big = "x" * 70_000  # > 64 KiB uncompressed: a 127-length frame, not a batch
            for n in range(1, 4):  # each after the previous arrived: none conflated away
                body = {"symbol": "AAA", "price": f"{n}.5", "version": n, "note": big}
                r.publish(f"{prefix}:prices:AAA", orjson.dumps(body))
                deadline = time.monotonic() + 10  # only turns a hang into a failure
                while len(frames) < n and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
            prices = [orjson.loads(f)["payload"]["price"] for f in frames]
            assert prices == ["1.5", "2.5", "3.5"]
            client.transport.close()

            _, stranger = await _connect(server.port, "not-a-token", channels, frames)
            with pytest.raises(ConnectionError, match="4401"):
                await asyncio.wait_for(stranger.done, 10)

    try:
        asyncio.run(asyncio.wait_for(scenario(), 30))
    finally:
        r.close()


def _exit_quietly() -> None:
    sys.exit(3)


def test_a_child_that_dies_is_reported_at_once():
    replies = multiprocessing.get_context("fork").Queue()
    child = start(_exit_quietly)
    with pytest.raises(BenchError, match="code 3"):  # not a 60 s timeout
        receive(replies, [child], 60, "test child")
