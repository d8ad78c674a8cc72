"""ClickHouse storage: ticks, 1-minute candles and their rollups, daily bars,
valuations and alerts, over chDB (``chdb:///dir``) or a server (``http://``).

Entry points: ``client.open_clickhouse`` (one per process),
``schema.apply_schema``, ``writer.insert_*``, ``history.history`` and
``history.backfill_daily_bars``. ``schema`` explains why rollups stay exact
under replays.
"""
