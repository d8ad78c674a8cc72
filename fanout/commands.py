"""Plain Redis reads for the HTTP API on one pipelined RESP connection.

Why: a ``GET`` through redis-py's asyncio client costs ~130 µs of CPU here
(pool checkout with a liveness probe, command packing, reply parsing through
several coroutine layers), about a third of a ``/v1/dashboard`` request. The
hub's RESP protocol (``fanout.pubsub``) answers replies in order from one
buffer, so concurrent requests share one connection and a read costs a few µs.

Guarantees: replies are matched to requests in order (a request that timed
out leaves its slot, so later replies stay matched); a lost connection is
replaced on the next read (a ``GET`` whose connection died between
requests is retried once on a fresh one); every failure is ``BackendUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs, urlsplit

from fanout.errors import BackendUnavailable
from fanout.pubsub import PubSubError, PubSubProtocol, RedisAddress, connect


def _ignore(_kind: bytes, _data: bytes) -> None:
    """No pushes on a command connection (it never subscribes)."""


def database_of(url: str) -> int:
    """The database number of a ``redis://host/N`` URL (0 when absent)."""
    parts = urlsplit(url)
    raw = parts.path.strip("/") or parse_qs(parts.query).get("db", ["0"])[0]
    if not raw.isdigit():
        raise ValueError(f"redis database must be a number, got {raw!r}")
    return int(raw)


class RedisReader:
    """``GET`` over one lazily (re)connected connection."""

    def __init__(self, url: str, client_name: str, timeout_s: float = 5.0) -> None:
        self._address = RedisAddress.from_url(url)
        self._db = database_of(url)
        self._client_name = client_name
        self._timeout = timeout_s
        self._conn: PubSubProtocol | None = None
        self._connecting = asyncio.Lock()

    async def get(self, key: str) -> bytes | None:
        try:
            async with asyncio.timeout(self._timeout):
                value = await self._get(key)
        except (PubSubError, TimeoutError) as exc:
            raise BackendUnavailable("redis", str(exc) or "timeout") from exc
        if value is not None and not isinstance(value, bytes):
            raise BackendUnavailable("redis", f"unexpected GET reply {type(value).__name__}")
        return value

    async def _get(self, key: str) -> object:
        reused = self._conn
        conn = await self._connection()
        try:
            return await conn.request("GET", key)
        except PubSubError:
            # Redis (or a proxy) dropped the idle connection between requests: a GET
            # is a read, so one retry on a fresh connection is safe. An error reply
            # on a live connection, or a failing fresh one, is not retried.
            if conn is not reused or not conn.closed.done():
                raise
            return await (await self._connection()).request("GET", key)

    async def _connection(self) -> PubSubProtocol:
        conn = self._conn
        if conn is not None and not conn.closed.done():
            return conn
        async with self._connecting:  # one reconnection for every waiting reader
            conn = self._conn
            if conn is None or conn.closed.done():
                conn = await connect(
                    self._address, self._client_name, _ignore, _ignore, timeout_s=self._timeout
                )
                try:
                    if self._db:
                        await conn.request("SELECT", str(self._db))
                except BaseException:  # also a timeout: never leak the half-set-up connection
                    if conn.transport is not None:
                        conn.transport.close()
                    raise
                self._conn = conn
            return conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(conn.closed), 1.0)
