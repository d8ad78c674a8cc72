"""Deduplicated batch inserts with retries, shared by every ClickHouse writer.

Guarantees:
- Each batch is one insert with an ``insert_deduplication_token`` derived
  from its content (table + rows): retrying it, here after
  ``SinkUnavailable`` or from a replayed flow, is dropped by ClickHouse if an
  earlier attempt landed, and so are the rollup views' blocks
  (``deduplicate_blocks_in_dependent_materialized_views``).
- ``SinkUnavailable`` is retried with exponential backoff; ``SinkRejected``
  is raised at once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

from sinks.clickhouse.client import ClickHouseClient
from sinks.errors import SinkUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for ``SinkUnavailable``: ``base * 2**n`` seconds, capped."""

    attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0


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


def with_retry(action: Callable[[], T], retry: RetryPolicy, what: str) -> T:
    """Run ``action``, retrying ``SinkUnavailable`` with backoff."""
    attempt = 1
    while True:
        try:
            return action()
        except SinkUnavailable as exc:
            if attempt >= retry.attempts:
                raise
            delay = min(retry.max_delay_s, retry.base_delay_s * 2 ** (attempt - 1))
            logger.warning(
                "clickhouse unavailable, retrying",
                extra={"what": what, "attempt": attempt, "delay_s": delay, "error": str(exc)},
            )
            time.sleep(delay)
            attempt += 1


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
    with_retry(lambda: client.insert(table, rows, columns, settings), retry, f"insert {name}")
    return len(rows)


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
