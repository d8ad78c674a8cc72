"""Versioned Postgres migrations: numbered SQL files, each applied once in
its own transaction, under an advisory lock so concurrent runs are safe."""

from __future__ import annotations

import re
from importlib import resources

import psycopg
from psycopg import sql

from sinks.errors import SinkUnavailable

_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_LOCK_ID = 0x466F6C696F  # "Folio"


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) in order."""
    found = []
    for entry in resources.files("sinks.postgres.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text()))
    return sorted(found)


def ensure_database(dsn: str) -> None:
    """Create the DSN's database if it does not exist (connects to ``postgres``)."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    dbname = str(info.get("dbname") or "postgres")
    admin = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    except psycopg.errors.DuplicateDatabase:
        pass  # created concurrently
    except psycopg.OperationalError as exc:
        raise SinkUnavailable("postgres", f"cannot connect: {_first_line(exc)}") from exc


def apply_migrations(dsn: str) -> list[str]:
    """Apply pending migrations; returns the names applied (empty on re-run)."""
    ensure_database(dsn)
    applied: list[str] = []
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
                for version, name, body in migration_files():
                    if version in done:
                        continue
                    with conn.transaction():
                        conn.execute(body.encode())
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                            (version, name),
                        )
                    applied.append(name)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    except psycopg.OperationalError as exc:
        raise SinkUnavailable("postgres", f"cannot connect: {_first_line(exc)}") from exc
    return applied


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
