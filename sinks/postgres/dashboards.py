"""``dashboards``: the latest dashboard document per user, for cold starts
(``document`` = ``{"user_id","version","cards":{name: card}}``, the same
shape as the Redis document; ``version`` = the newest card version).

Delivery guarantee: effectively-once. Updates carry only the changed cards;
the upsert merges them card by card inside Postgres, each card replacing
the stored one only when its ``version`` is greater, and touches the row
only when at least one card is newer. A replay therefore changes nothing
and an older card never overwrites a newer one, whatever the order.
"""

from __future__ import annotations

import orjson
import psycopg

from flows.dashboard.board import DashboardUpdate, newest_cards
from sinks.postgres.connection import PostgresSink

# The new cards that beat the stored ones ("fresh"), merged into the stored
# document; a row without any is left alone.
_FRESH = """(SELECT jsonb_object_agg(n.key, n.value)
   FROM jsonb_each(EXCLUDED.document -> 'cards') AS n(key, value)
   WHERE (n.value ->> 'version')::bigint
       > COALESCE((d.document -> 'cards' -> n.key ->> 'version')::bigint, -1))"""

_UPSERT = f"""INSERT INTO dashboards AS d (user_id, document, version)
VALUES (%s, %s::jsonb, %s)
ON CONFLICT (user_id) DO UPDATE SET
 document = jsonb_build_object(
   'user_id', EXCLUDED.user_id,
   'version', GREATEST(d.version, EXCLUDED.version),
   'cards', COALESCE(d.document -> 'cards', '{{}}'::jsonb) || {_FRESH}),
 version = GREATEST(d.version, EXCLUDED.version),
 updated_at = now()
WHERE {_FRESH} IS NOT NULL"""


def write_dashboards(cur: psycopg.Cursor, updates: list[DashboardUpdate]) -> int:
    """Upsert the newest card versions per user; returns users sent."""
    rows = []
    for user_id, cards in sorted(newest_cards(updates).items()):
        version = max(card.version for card in cards.values())
        body = b",".join(
            orjson.dumps(name) + b":" + card.json for name, card in sorted(cards.items())
        )
        document = b'{"user_id":%s,"version":%d,"cards":{%s}}' % (
            orjson.dumps(user_id),
            version,
            body,
        )
        rows.append((user_id, document.decode(), version))
    cur.executemany(_UPSERT, rows)
    return len(rows)


def dashboards_sink(dsn: str) -> PostgresSink:
    return PostgresSink(dsn, "postgres:dashboards", write_dashboards)
