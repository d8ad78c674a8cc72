"""One ClickHouse connection per process, shared by every worker thread.

``open_clickhouse`` accepts ``chdb:///abs/dir`` (the embedded engine, in this
process) or ``http(s)://host:8123`` (a server); the SQL is the same.

Guarantees:
- Every call runs under one re-entrant lock: Bytewax worker threads share the
  client (one client per worker hung chDB at exit), and ``locked()`` lets a
  caller hold the lock across a read-then-write sequence.
- For a chDB directory, this process takes an exclusive ``flock`` on
  ``<dir>.owner.lock`` before opening the engine and records itself in
  ``<dir>.owner.json``; a second process gets ``SinkBusy`` naming the owner at
  once instead of chDB's bare "Cannot lock file .../status". The kernel drops
  the lock when the owner dies, so a crashed owner never blocks a restart.
- Library exceptions leave this module as ``SinkUnavailable`` (retryable:
  connection refused, timeouts, too many parts) or ``SinkRejected``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

from sinks.errors import SinkBusy, SinkError, SinkRejected, SinkUnavailable

logger = logging.getLogger(__name__)

SINK = "clickhouse"
_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Server error codes worth a retry: the same statement can succeed later.
_TRANSIENT_CODES = frozenset({159, 164, 202, 209, 210, 241, 242, 252, 319, 425, 999})


@dataclass(frozen=True)
class OwnerLock:
    """The held ``flock`` on ``<dir>.owner.lock`` (chDB only)."""

    directory: Path
    handle: TextIO

    @property
    def info_path(self) -> Path:
        return Path(f"{self.directory}.owner.json")

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.info_path.unlink()
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _describe_owner(info_path: Path) -> str:
    try:
        info = json.loads(info_path.read_text())
        argv = [str(part) for part in info["argv"]]
        command = " ".join([Path(argv[0]).name, *argv[1:]]) if argv else "?"
        return f"pid {int(info['pid'])} ({command[:80]})"
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return "another process (owner unknown)"


def acquire_owner_lock(directory: Path) -> OwnerLock:
    """Take the exclusive, non-blocking owner lock of a chDB directory."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    handle = open(f"{directory}.owner.lock", "a+")  # noqa: SIM115 - held until release()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        owner = _describe_owner(Path(f"{directory}.owner.json"))
        raise SinkBusy(
            SINK,
            f"ClickHouse data directory {directory} is in use by {owner}; "
            "stop it or set FOLIO_CLICKHOUSE_DSN to a server",
        ) from None
    lock = OwnerLock(directory, handle)
    info = {"pid": os.getpid(), "argv": sys.argv, "started_at": datetime.now(UTC).isoformat()}
    lock.info_path.write_text(json.dumps(info))
    return lock


def translate(exc: Exception, action: str) -> SinkError:
    """Map a clickhouse-connect (or serialization) error to the sink hierarchy."""
    first_line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    code = getattr(exc, "code", None)
    if isinstance(exc, OperationalError) or code in _TRANSIENT_CODES:
        return SinkUnavailable(SINK, f"{action}: {first_line}")
    return SinkRejected(SINK, f"{action}: {first_line}")


class ClickHouseClient:
    """Thread-safe wrapper owning one clickhouse-connect client.

    ``table(name)`` qualifies a table with the configured database so no
    statement depends on session ``USE`` state.
    """

    def __init__(
        self,
        raw: Any,
        database: str,
        owner: OwnerLock | None,
        location: str,
        lock: threading.RLock | None = None,
        owns_raw: bool = True,
    ) -> None:
        self._raw = raw
        self._owner = owner
        self._lock = lock or threading.RLock()
        self._owns_raw = owns_raw
        self._closed = False
        self.database = database
        self.location = location

    def for_database(self, database: str) -> ClickHouseClient:
        """A view on another database sharing this connection and lock;
        closing the view does not close the connection."""
        if not _DATABASE_NAME.match(database):
            raise SinkRejected(SINK, f"invalid database name {database!r}")
        return ClickHouseClient(self._raw, database, None, self.location, self._lock, False)

    def table(self, name: str) -> str:
        return f"`{self.database}`.`{name}`"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the client lock across several calls (read-then-write)."""
        with self._lock:
            yield

    def command(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Any:
        with self._lock, self._translated("command"):
            return self._raw.command(sql, parameters=parameters, settings=settings)

    def query_rows(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> list[tuple[Any, ...]]:
        with self._lock, self._translated("query"):
            return list(self._raw.query(sql, parameters=parameters, settings=settings).result_rows)

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        settings: dict[str, Any] | None = None,
    ) -> int:
        """Insert rows; returns the rows the server reports written."""
        with self._lock, self._translated(f"insert into {table}"):
            summary = self._raw.insert(
                table, list(rows), column_names=list(column_names), settings=settings
            )
            return int(summary.written_rows)

    def raw_insert(
        self,
        table: str,
        column_names: Sequence[str],
        data: bytes,
        fmt: str,
        settings: dict[str, Any] | None = None,
    ) -> None:
        with self._lock, self._translated(f"insert into {table}"):
            self._raw.raw_insert(table, list(column_names), data, settings=settings, fmt=fmt)

    def close(self) -> None:
        """Close the client and release the owner lock; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self._owns_raw:
                return
            try:
                self._raw.close()
            finally:
                if self._owner is not None:
                    self._owner.release()

    def __enter__(self) -> ClickHouseClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        if self._closed:
            raise SinkRejected(SINK, f"{action}: client is closed")
        try:
            yield
        except (ClickHouseError, TypeError, ValueError, ArithmeticError) as exc:
            raise translate(exc, action) from exc


def chdb_directory(dsn: str) -> Path | None:
    """The data directory of a ``chdb:///abs/dir`` DSN; None for ``chdb://memory``
    and servers. Other ``chdb://`` forms (a relative path in the host part)
    are rejected: the owner lock needs to know the directory."""
    parsed = urlparse(dsn)
    if parsed.scheme != "chdb" or parsed.netloc in ("memory", ":memory:"):
        return None
    if parsed.netloc or parsed.path in ("", "/"):
        raise SinkRejected(SINK, f"expected chdb:///absolute/dir or chdb://memory, got {dsn!r}")
    return Path(os.path.realpath(parsed.path))


def open_clickhouse(dsn: str, database: str) -> ClickHouseClient:
    """Connect to ``dsn`` and return the shared client.

    Raises ``SinkBusy`` when another process owns the chDB directory (or this
    process already runs chDB on another directory), ``SinkUnavailable`` when
    a server cannot be reached, ``SinkRejected`` for a bad database name.
    The database itself is created by ``schema.apply_schema``.
    """
    if not _DATABASE_NAME.match(database):
        raise SinkRejected(SINK, f"invalid database name {database!r}")
    directory = chdb_directory(dsn)
    owner = acquire_owner_lock(directory) if directory is not None else None
    location = str(directory) if directory is not None else _redacted(dsn)
    try:
        raw = clickhouse_connect.get_client(dsn=dsn, tz_mode="schema")
    except DatabaseError as exc:
        if owner is not None:
            owner.release()
        raise _open_error(exc, location) from exc
    except Exception:
        if owner is not None:
            owner.release()
        raise
    logger.info("clickhouse connected", extra={"location": location, "database": database})
    return ClickHouseClient(raw, database, owner, location)


def _open_error(exc: DatabaseError, location: str) -> SinkError:
    message = str(exc)
    if "Cannot lock file" in message:
        return SinkBusy(SINK, f"ClickHouse data directory {location} is locked by another process")
    if "already initialized with path" in message:
        return SinkBusy(
            SINK, f"this process already runs chDB on another directory: {message[:200]}"
        )
    if isinstance(exc, OperationalError):
        return SinkUnavailable(
            SINK, f"cannot connect to {location}: {message.splitlines()[0][:200]}"
        )
    return translate(exc, f"connect to {location}")


def _redacted(dsn: str) -> str:
    parsed = urlparse(dsn)
    host = parsed.hostname or ""
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{host}{port}"
