"""Deduplicated batch inserts with retries, shared by every ClickHouse writer.

Guarantees:
- Each batch is one insert with an ``insert_deduplication_token`` derived
  from its content (table + rows): retrying it, here after
  ``SinkUnavailable`` or from a replayed flow, is dropped by ClickHouse if an
  earlier attempt landed, and so are the rollup views' blocks
  (``deduplicate_blocks_in_dependent_materialized_views``).
- ``SinkUnavailable`` is retried with backoff (``sinks.retry``, as every
  sink); ``SinkRejected`` is raised at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, TypeVar

from sinks.clickhouse.client import SINK, ClickHouseClient
from sinks.retry import RetryPolicy, with_retry

T = TypeVar("T")
# Re-raise at once: for callers that retry a larger unit themselves.
NO_RETRY = RetryPolicy(max_outage_s=0.0)


def batched(rows: Iterable[T], size: int) -> Iterator[list[T]]:
    if size <= 0:
        raise ValueError("batch size must be > 0")
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def dedup_token(table: str, rows: Sequence[Sequence[Any]]) -> str:
    """Deterministic token for one batch: same table and rows, same token."""
    digest = hashlib.sha256(table.encode())
    for row in rows:
        digest.update(repr(tuple(row)).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


def insert_batch(
    client: ClickHouseClient,
    name: str,
    rows: Sequence[Sequence[Any]],
    columns: Sequence[str],
    retry: RetryPolicy,
) -> int:
    """One deduplicated insert into table ``name`` (with retries); returns rows sent."""
    if not rows:
        return 0
    table = client.table(name)
    settings = {
        "insert_deduplicate": 1,
        "insert_deduplication_token": dedup_token(name, rows),
        "deduplicate_blocks_in_dependent_materialized_views": 1,
    }
    with_retry(SINK, lambda: client.insert(table, rows, columns, settings), retry)
    return len(rows)


def insert_block(
    client: ClickHouseClient,
    name: str,
    block: bytes,
    columns: Sequence[str],
    fmt: str,
    retry: RetryPolicy,
) -> None:
    """One deduplicated insert of an already formatted block (e.g.
    ``TabSeparated``); the token hashes the block's bytes, so it costs
    nothing per row."""
    if not block:
        return
    digest = hashlib.sha256(name.encode())
    digest.update(block)
    settings = {
        "insert_deduplicate": 1,
        "insert_deduplication_token": digest.hexdigest(),
        "deduplicate_blocks_in_dependent_materialized_views": 1,
        # A batch is small: parsing it on several threads costs more CPU
        # than it saves on two cores.
        "input_format_parallel_parsing": 0,
    }
    table = client.table(name)
    with_retry(SINK, lambda: client.raw_insert(table, columns, block, fmt, settings), retry)


def insert_all(
    client: ClickHouseClient,
    name: str,
    rows: Iterable[Sequence[Any]],
    columns: Sequence[str],
    batch_size: int,
    retry: RetryPolicy,
) -> int:
    """``insert_batch`` per chunk of ``batch_size``; returns rows sent."""
    return sum(
        insert_batch(client, name, chunk, columns, retry) for chunk in batched(rows, batch_size)
    )
