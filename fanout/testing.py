"""Helpers for tests and benchmarks of the fan-out against real services:
a throw-away Postgres database, a running server on port 0, a JSON client.
Nothing here runs at import time."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import psycopg
from psycopg import sql
from websockets.asyncio.client import ClientConnection, connect

from fanout.config import FanoutConfig
from fanout.server import FanoutServer


@contextlib.contextmanager
def temporary_database(
    admin_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres",
) -> Iterator[str]:
    """Create ``folio_t_<random>``, apply the migrations, yield its DSN, drop it."""
    from sinks.postgres.migrate import apply_migrations

    name = f"folio_t_{secrets.token_hex(6)}"
    dsn = psycopg.conninfo.make_conninfo(admin_dsn, dbname=name)
    apply_migrations(dsn)
    try:
        yield dsn
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def add_portfolios(dsn: str, rows: list[tuple[str, str]]) -> None:
    """Insert (portfolio_id, user_id) rows."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for portfolio_id, user_id in rows:
            conn.execute(
                "INSERT INTO portfolios (portfolio_id, user_id) VALUES (%s, %s)",
                (portfolio_id, user_id),
            )


@contextlib.asynccontextmanager
async def running_server(config: FanoutConfig, history: Any = None) -> AsyncIterator[FanoutServer]:
    server = FanoutServer(config, history)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown()


class JsonClient:
    """A websocket client that flattens batches into single messages."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._buffer: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(message).decode())

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        while not self._buffer:
            frame = orjson.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            self._buffer.extend(frame["messages"] if frame.get("type") == "batch" else [frame])
        return self._buffer.pop(0)

    async def recv_until(self, predicate: Any, timeout: float = 5.0) -> dict[str, Any]:
        """The first message matching ``predicate`` (others are discarded)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv(timeout)
                if predicate(message):
                    return message

    async def close(self) -> None:
        await self.ws.close()


@contextlib.asynccontextmanager
async def client(
    port: int, token: str | None = None, uri_suffix: str = "", **kwargs: Any
) -> AsyncIterator[JsonClient]:
    """Connected (and, given a token, authenticated) client."""
    async with connect(f"ws://127.0.0.1:{port}/ws{uri_suffix}", **kwargs) as ws:
        json_client = JsonClient(ws)
        if token is not None:
            await json_client.send({"type": "auth", "token": token})
            reply = await json_client.recv()
            if reply.get("type") != "authenticated":
                raise AssertionError(f"authentication failed: {reply}")
        yield json_client


async def http_get(
    port: int, path: str, token: str | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """A minimal HTTP/1.1 request (status, lower-cased headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


class KeepAliveClient:
    """One persistent HTTP/1.1 connection: requests one after another."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> KeepAliveClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def get(self, path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
        auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
        self._writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode())
        return await self.response()

    def send_raw(self, data: bytes) -> None:
        self._writer.write(data)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """The next response (status, lower-cased headers, body)."""
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await self._reader.readexactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), headers, body

    async def at_eof(self, timeout: float = 5.0) -> bool:
        """Whether the server closed the connection (within ``timeout``)."""
        return await asyncio.wait_for(self._reader.read(1), timeout) == b""

    def close(self) -> None:
        self._writer.close()
