"""``alerts``: every firing once, keyed by its deterministic ``alert_id``."""

from __future__ import annotations

import psycopg

from schemas.alerts import Alert, alert_row
from sinks.postgres.connection import PostgresSink

# Columns in ``AlertRow`` order; event time goes as epoch ms (exact).
_INSERT = """INSERT INTO alerts (alert_id, rule_id, user_id, portfolio_id, symbol, kind, observed,
 threshold, message, triggered_at, payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,
 TIMESTAMPTZ 'epoch' + %s * INTERVAL '1 millisecond', %s)
ON CONFLICT (alert_id) DO NOTHING"""


def write_alerts(cur: psycopg.Cursor, alerts: list[Alert]) -> int:
    unique = {a.alert_id: a for a in alerts}
    cur.executemany(_INSERT, [alert_row(a) for a in unique.values()])
    return len(unique)


def alerts_sink(dsn: str) -> PostgresSink:
    return PostgresSink(dsn, "postgres:alerts", write_alerts)
