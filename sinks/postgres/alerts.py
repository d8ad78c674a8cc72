"""``alerts``: every firing once, keyed by its deterministic ``alert_id``."""

from __future__ import annotations

import psycopg

from schemas.alerts import Alert
from sinks.postgres.connection import PostgresSink

_INSERT = """INSERT INTO alerts (alert_id, rule_id, user_id, portfolio_id, symbol, kind, observed,
 threshold, message, triggered_at, payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (alert_id) DO NOTHING"""


def write_alerts(cur: psycopg.Cursor, alerts: list[Alert]) -> int:
    unique = {a.alert_id: a for a in alerts}
    cur.executemany(
        _INSERT,
        [
            (
                a.alert_id,
                a.rule_id,
                a.user_id,
                a.portfolio_id,
                a.symbol,
                a.kind.value,
                a.observed,
                a.threshold,
                a.message,
                a.triggered_at,
                a.model_dump_json(),
            )
            for a in unique.values()
        ],
    )
    return len(unique)


def alerts_sink(dsn: str) -> PostgresSink:
    return PostgresSink(dsn, "postgres:alerts", write_alerts)
