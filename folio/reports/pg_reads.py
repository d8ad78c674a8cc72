"""Postgres reads behind the reports: the portfolio row, its applied ledger
and its latest stored valuation.

One short-lived connection per report (reports run at human pace); library
errors leave as ``SinkUnavailable`` (cannot connect) or ``SinkRejected``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from pydantic import ValidationError

from flows.portfolio.money import datetime_ms
from schemas.common import normalize_symbol
from schemas.transactions import Transaction
from schemas.valuation import Valuation
from sinks.errors import SinkRejected, SinkUnavailable

logger = logging.getLogger(__name__)

SINK = "postgres"
_TXN_COLUMNS = (
    "txn_id", "portfolio_id", "user_id", "type", "symbol", "quantity", "price",
    "amount", "ratio", "fees", "currency", "executed_at",
)  # fmt: skip


@dataclass(frozen=True)
class PortfolioRow:
    """A row of ``portfolios``."""

    portfolio_id: str
    user_id: str
    name: str | None
    base_currency: str
    benchmark: str


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


@contextmanager
def pg_connection(dsn: str, connect_timeout_s: int = 5) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection; psycopg errors inside become sink errors."""
    try:
        with psycopg.connect(dsn, connect_timeout=connect_timeout_s, autocommit=True) as conn:
            yield conn
    except psycopg.OperationalError as exc:
        raise SinkUnavailable(SINK, _first_line(exc)) from exc
    except psycopg.Error as exc:
        raise SinkRejected(SINK, _first_line(exc)) from exc


def load_portfolio(conn: psycopg.Connection[Any], portfolio_id: str) -> PortfolioRow | None:
    row = conn.execute(
        "SELECT portfolio_id, user_id, name, base_currency, benchmark"
        " FROM portfolios WHERE portfolio_id = %s",
        (portfolio_id,),
    ).fetchone()
    return None if row is None else PortfolioRow(*row)


def load_transactions(
    conn: psycopg.Connection[Any], portfolio_id: str, as_of: datetime
) -> list[Transaction]:
    """Transactions executed at or before ``as_of``, in the ledger's order:
    (executed_at, txn_id), sorted here so txn_id compares by code point as
    in ``flows.portfolio.buffer`` (a database collation might not)."""
    rows = conn.execute(
        f"SELECT {', '.join(_TXN_COLUMNS)} FROM transactions"
        " WHERE portfolio_id = %s AND executed_at <= %s",
        (portfolio_id, as_of),
    ).fetchall()
    txns = [
        Transaction.model_validate(
            {k: v for k, v in zip(_TXN_COLUMNS, row, strict=True) if v is not None}
        )
        for row in rows
    ]
    txns.sort(key=lambda t: (datetime_ms(t.executed_at), t.executed_at, t.txn_id))
    return txns


def latest_valuation(
    conn: psycopg.Connection[Any], portfolio_id: str, as_of: datetime
) -> Valuation | None:
    """``latest_valuations``' row if it reflects nothing after ``as_of``
    (see ``covers``), else None."""
    row = conn.execute(
        "SELECT payload::text, window_end FROM latest_valuations WHERE portfolio_id = %s",
        (portfolio_id,),
    ).fetchone()
    if row is None or not covers(row[1], as_of):
        return None
    return parse_valuation(row[0])


def covers(window_end: datetime, as_of: datetime) -> bool:
    """A valuation of the window ending at W reflects events before W, so it
    belongs to ``as_of`` when W - 1 ms <= as_of."""
    return datetime_ms(window_end) - 1 <= datetime_ms(as_of)


def parse_valuation(payload: str | bytes) -> Valuation | None:
    """A stored valuation document, or None (logged) if it does not parse.

    Documents written before ``holdings_value`` existed carried
    ``total_value`` (positions + cash) and a positions-only ``market_value``;
    they are read in today's terms."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        logger.warning("stored valuation is not JSON")
        return None
    if isinstance(data, dict) and "total_value" in data and "holdings_value" not in data:
        data = {
            **data,
            "holdings_value": data.get("market_value"),
            "market_value": data["total_value"],
        }
    try:
        return Valuation.model_validate(data)
    except ValidationError as exc:
        logger.warning("stored valuation does not parse", extra={"error": _first_line(exc)})
        return None


def set_benchmark(dsn: str, portfolio_id: str, symbol: str) -> str | None:
    """Store ``symbol`` (normalized) as the portfolio's benchmark; returns it,
    or None when the portfolio is unknown. Raises ``ContractError`` for a bad symbol."""
    normalized = normalize_symbol(symbol, "benchmark")
    with pg_connection(dsn) as conn:
        row = conn.execute(
            "UPDATE portfolios SET benchmark = %s WHERE portfolio_id = %s RETURNING benchmark",
            (normalized, portfolio_id),
        ).fetchone()
    return None if row is None else str(row[0])
