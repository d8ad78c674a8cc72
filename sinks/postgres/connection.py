"""One Postgres connection per sink partition, reconnected after a failure;
library errors become ``SinkUnavailable`` (retryable) or ``SinkRejected``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from sinks import metrics
from sinks.errors import SinkRejected, SinkUnavailable
from sinks.retry import RetryPolicy, with_retry

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRYABLE = (
    psycopg.OperationalError,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
)


class PgSession:
    def __init__(self, dsn: str, sink: str) -> None:
        self._dsn = dsn
        self._sink = sink
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._dsn, connect_timeout=5, autocommit=False)
        return self._conn

    def transaction(self, work: Callable[[psycopg.Cursor], T]) -> T:
        """Run ``work`` in one transaction; commit, or roll back and raise typed."""
        try:
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                return work(cur)
        except _RETRYABLE as exc:
            self.close()  # the next attempt reconnects
            raise SinkUnavailable(self._sink, _first_line(exc)) from exc
        except psycopg.Error as exc:
            raise SinkRejected(self._sink, _first_line(exc)) from exc

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                log.debug("close_failed", extra={"sink": self._sink})
            self._conn = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True)
class PostgresSink(DynamicSink[list[Any]]):
    """A batching Postgres sink: items are lists of rows; each Bytewax batch
    is flattened and handed to ``write`` inside one database transaction,
    retried while Postgres is unavailable. ``write`` must be idempotent
    (upserts by key with a version), which makes the sink effectively-once."""

    dsn: str
    name: str
    write: Callable[[psycopg.Cursor, list[Any]], int]
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PgPartition:
        return _PgPartition(self)


class _PgPartition(StatelessSinkPartition[list[Any]]):
    def __init__(self, spec: PostgresSink) -> None:
        self._spec = spec
        self._session = PgSession(spec.dsn, spec.name)

    def write_batch(self, items: list[list[Any]]) -> None:
        rows = [row for batch in items for row in batch]
        if not rows:
            return
        started = time.perf_counter()
        name = self._spec.name
        written = with_retry(
            name,
            lambda: self._session.transaction(lambda cur: self._spec.write(cur, rows)),
            self._spec.retry,
        )
        metrics.ROWS.labels(name).inc(written)
        metrics.BATCH_SECONDS.labels(name).observe(time.perf_counter() - started)

    def close(self) -> None:
        self._session.close()
