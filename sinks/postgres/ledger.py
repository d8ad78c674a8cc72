"""Postgres state users read: ``portfolios``, the ``transactions`` ledger and
``positions``.

Delivery guarantee: effectively-once. One database transaction per batch;
the ledger is insert-if-absent on ``txn_id``; a position is updated only by
a row with a higher ledger version, so replays and out-of-order writes never
regress it.
"""

from __future__ import annotations

import psycopg

from flows.valuation.shard import AppliedTransaction, PositionRow
from sinks.postgres.connection import PostgresSink

_PORTFOLIO = """INSERT INTO portfolios (portfolio_id, user_id) VALUES (%s, %s)
ON CONFLICT (portfolio_id) DO NOTHING"""
_TRANSACTION = """INSERT INTO transactions (txn_id, portfolio_id, user_id, type, symbol, quantity,
 price, amount, ratio, fees, currency, executed_at) VALUES
 (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (txn_id) DO NOTHING"""
_POSITION = """INSERT INTO positions AS p (portfolio_id, symbol, quantity, cost_basis, realized_pnl,
 dividends, fees, currency, version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (portfolio_id, symbol) DO UPDATE SET quantity = EXCLUDED.quantity,
 cost_basis = EXCLUDED.cost_basis, realized_pnl = EXCLUDED.realized_pnl,
 dividends = EXCLUDED.dividends, fees = EXCLUDED.fees, currency = EXCLUDED.currency,
 version = EXCLUDED.version, updated_at = now()
WHERE p.version < EXCLUDED.version"""


def write_ledger(cur: psycopg.Cursor, batch: list[AppliedTransaction]) -> int:
    portfolios = sorted({(a.txn.portfolio_id, a.txn.user_id) for a in batch})
    positions: dict[tuple[str, str], PositionRow] = {}
    for applied in batch:
        row = applied.position
        if row is not None:
            key = (row.portfolio_id, row.symbol)
            if key not in positions or positions[key].version < row.version:
                positions[key] = row
    cur.executemany(_PORTFOLIO, portfolios)
    cur.executemany(
        _TRANSACTION,
        [
            (
                t.txn_id,
                t.portfolio_id,
                t.user_id,
                t.type.value,
                t.symbol,
                t.quantity,
                t.price,
                t.amount,
                t.ratio,
                t.fees,
                t.currency,
                t.executed_at,
            )
            for t in (a.txn for a in batch)
        ],
    )
    cur.executemany(_POSITION, sorted(positions.values()))
    return len(batch)


def ledger_sink(dsn: str) -> PostgresSink:
    return PostgresSink(dsn, "postgres:ledger", write_ledger)
