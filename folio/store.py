"""Open the configured ClickHouse (embedded chDB directory or a server)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from folio.settings import Settings


@contextmanager
def open_store(settings: Settings) -> Iterator[Any]:
    from sinks.clickhouse.client import open_clickhouse

    client = open_clickhouse(settings.clickhouse_url(), settings.clickhouse_database)
    try:
        yield client
    finally:
        client.close()


def clickhouse_schema(settings: Settings) -> str:
    from sinks.clickhouse.schema import apply_schema

    with open_store(settings) as client:
        apply_schema(client, settings.clickhouse_ticks_ttl_days)
    return f"schema ready in {settings.clickhouse_database}"
