"""Where results go: Redis, Postgres, ClickHouse and Kafka output topics.

Every sink is idempotent: it upserts by key with a version, so a Bytewax
replay after a restart converges to the same state instead of duplicating.
"""
