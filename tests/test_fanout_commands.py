"""``RedisReader`` against the real Redis: a failed ``SELECT`` leaves no
connection behind, and a connection killed between reads is replaced within
the same ``get``."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis

from fanout.commands import RedisReader
from fanout.errors import BackendUnavailable


def _clients(r: redis.Redis, name: str) -> list[dict]:
    return [c for c in r.client_list() if c["name"] == name]


def test_a_failed_select_closes_its_connection():
    name = f"fo-cmd-{secrets.token_hex(4)}"
    r = redis.Redis()

    async def scenario():
        reader = RedisReader("redis://127.0.0.1:6379/999", name, timeout_s=5)
        for _ in range(3):  # each attempt opens a connection; none may stay
            with pytest.raises(BackendUnavailable, match="DB index"):
                await reader.get("k")
        for _ in range(100):  # the server sees the close a moment later
            if not _clients(r, name):
                break
            await asyncio.sleep(0.05)
        assert _clients(r, name) == []
        await reader.close()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 20))
    finally:
        r.close()


def test_a_get_survives_its_connection_being_killed_between_reads():
    name, key = f"fo-cmd-{secrets.token_hex(4)}", f"fo_cmd_{secrets.token_hex(4)}"
    r = redis.Redis(db=2)
    r.set(key, b"v")

    async def scenario():
        reader = RedisReader("redis://127.0.0.1:6379/2", name, timeout_s=5)
        for _ in range(5):
            assert await reader.get(key) == b"v"
            killed = sum(r.client_kill_filter(_id=c["id"]) for c in _clients(r, name))
            assert killed == 1
            # No pause: the reader may not have noticed yet; the GET still succeeds.
        await reader.close()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 20))
    finally:
        r.delete(key)
        r.close()
