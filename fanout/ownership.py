"""Postgres reads: who owns a portfolio, which portfolios a user has.

One autocommit connection, used by one query at a time (ownership answers
are cached above this, so the rate is low); reconnects once on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg

from fanout.errors import BackendUnavailable

log = logging.getLogger(__name__)

_OWNER_SQL = "SELECT user_id FROM portfolios WHERE portfolio_id = %s"
_LIST_SQL = (
    "SELECT p.portfolio_id, p.name, p.base_currency,"
    " COALESCE(array_agg(pos.symbol ORDER BY pos.symbol)"
    "   FILTER (WHERE pos.symbol IS NOT NULL AND pos.quantity <> 0), '{}')"
    " FROM portfolios p LEFT JOIN positions pos ON pos.portfolio_id = p.portfolio_id"
    " WHERE p.user_id = %s GROUP BY p.portfolio_id, p.name, p.base_currency"
    " ORDER BY p.portfolio_id"
)


class OwnershipStore:
    """Uncached Postgres lookups; errors become ``BackendUnavailable``."""

    def __init__(self, dsn: str, connect_timeout_s: int = 5) -> None:
        self._dsn = dsn
        self._timeout = connect_timeout_s
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    async def owner_of(self, portfolio_id: str) -> str | None:
        rows = await self._query(_OWNER_SQL, (portfolio_id,))
        return str(rows[0][0]) if rows else None

    async def portfolios_of(self, user_id: str) -> list[dict[str, Any]]:
        rows = await self._query(_LIST_SQL, (user_id,))
        return [
            {"portfolio_id": r[0], "name": r[1], "base_currency": r[2], "symbols": list(r[3])}
            for r in rows
        ]

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None

    async def _query(self, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        async with self._lock:
            for attempt in (1, 2):
                try:
                    conn = await self._connection()
                    cursor = await conn.execute(query, params)
                    return list(await cursor.fetchall())
                except psycopg.OperationalError as exc:
                    await self._drop()
                    if attempt == 2:
                        raise BackendUnavailable("postgres", _first_line(exc)) from exc
                    log.warning("postgres query failed, reconnecting: %s", _first_line(exc))
                except psycopg.Error as exc:
                    raise BackendUnavailable("postgres", _first_line(exc)) from exc
        raise AssertionError("unreachable")

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, connect_timeout=self._timeout
            )
        return self._conn

    async def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):  # already broken; discarding it
                await self._conn.close()
            self._conn = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
