"""``latest_valuations``: one row per portfolio, for cold starts and reads.

Delivery guarantee: effectively-once; within a batch only the newest
valuation per portfolio is written, and only if its version (window end, ms)
is newer than the stored one.
"""

from __future__ import annotations

import psycopg

from flows.portfolio.valuation_record import ValuationRecord
from sinks.postgres.connection import PostgresSink

_UPSERT = """INSERT INTO latest_valuations AS v (portfolio_id, user_id, window_start, window_end,
 market_value, cash, cost_basis, unrealized_pnl, realized_pnl, payload, version)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (portfolio_id) DO UPDATE SET user_id = EXCLUDED.user_id,
 window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end,
 market_value = EXCLUDED.market_value, cash = EXCLUDED.cash, cost_basis = EXCLUDED.cost_basis,
 unrealized_pnl = EXCLUDED.unrealized_pnl, realized_pnl = EXCLUDED.realized_pnl,
 payload = EXCLUDED.payload, version = EXCLUDED.version, updated_at = now()
WHERE v.version < EXCLUDED.version"""


def newest_per_portfolio(rows: list[ValuationRecord]) -> list[ValuationRecord]:
    newest: dict[str, ValuationRecord] = {}
    for v in rows:
        current = newest.get(v.portfolio_id)
        if current is None or v.version > current.version:
            newest[v.portfolio_id] = v
    return [newest[k] for k in sorted(newest)]


def write_latest(cur: psycopg.Cursor, valuations: list[ValuationRecord]) -> int:
    rows = newest_per_portfolio(valuations)
    cur.executemany(
        _UPSERT,
        [
            (
                v.portfolio_id,
                v.user_id,
                v.window_start,
                v.window_end,
                v.market_value,
                v.cash,
                v.cost_basis,
                v.unrealized_pnl,
                v.realized_pnl,
                v.json.decode(),
                v.version,
            )
            for v in rows
        ],
    )
    return len(rows)


def latest_valuation_sink(dsn: str) -> PostgresSink:
    return PostgresSink(dsn, "postgres:latest_valuations", write_latest)
