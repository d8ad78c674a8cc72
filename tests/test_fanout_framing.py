"""Frames written straight to the transport (``fanout.framing``) decode in
websockets' own client, for every compression it may negotiate: none,
permessage-deflate with context takeover, and without (real server, Redis)."""

from __future__ import annotations

import asyncio
import os
import secrets
from typing import Any

import orjson
import pytest
import redis
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from fanout.auth import mint_token
from fanout.config import FanoutConfig
from fanout.testing import add_portfolios, client, running_server, temporary_database

SECRET = "framing-test-secret-0123456789abcdef"

NEGOTIATIONS: dict[str, dict[str, Any]] = {
    "none": {"compression": None},
    "deflate": {"compression": "deflate"},
    "deflate, no context takeover": {
        "compression": None,
        "extensions": [ClientPerMessageDeflateFactory(server_no_context_takeover=True)],
    },
}


@pytest.fixture(scope="module")
def dsn():
    with temporary_database() as dsn:
        add_portfolios(dsn, [("p1", "alice")])
        yield dsn


@pytest.mark.parametrize("negotiation", list(NEGOTIATIONS))
def test_updates_decode_for_every_negotiated_compression(dsn, negotiation):
    prefix = f"fo_frm_{secrets.token_hex(4)}"
    config = FanoutConfig(
        "127.0.0.1", 0, "redis://127.0.0.1:6379/0", prefix, dsn, SECRET, conflation_ms=0,
        max_frame_bytes=1 << 20,
    )  # fmt: skip
    r = redis.Redis()
    token = mint_token(SECRET, "alice", 60)
    # Sizes that need each websocket length encoding (7 bit, 16 bit, 64 bit),
    # random hex so that compression cannot make the big one small.
    notes = ["", "x" * 1000, os.urandom(40_000).hex()]

    async def scenario():
        async with running_server(config) as server:
            kwargs: dict[str, Any] = {"max_size": 1 << 20, **NEGOTIATIONS[negotiation]}
            async with client(server.port, token, **kwargs) as ws:
                await ws.send({"type": "subscribe", "channels": ["prices:AAA"]})
                await ws.recv_until(lambda m: m.get("channel") == "prices:AAA")  # snapshot
                for version, note in enumerate(notes, start=1):
                    body = {"symbol": "AAA", "price": "1", "version": version, "note": note}
                    r.publish(f"{prefix}:prices:AAA", orjson.dumps(body))
                    got = await ws.recv_until(lambda m: m.get("type") == "update")
                    assert (got["payload"]["version"], got["payload"]["note"]) == (version, note)

    try:
        asyncio.run(asyncio.wait_for(scenario(), 30))
    finally:
        r.close()
