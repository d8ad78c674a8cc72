"""ClickHouse sink on a real embedded engine: schema, writers, owner lock, errors.

chDB runs one data directory per process at a time (opening a second one
while the first is open fails), so the tests share the session's engine
(``engine`` in conftest) and each gets its own database on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from schemas.topics import CLICKHOUSE_TABLES
from sinks.clickhouse.client import (
    ClickHouseClient,
    acquire_owner_lock,
    open_clickhouse,
)
from sinks.clickhouse.schema import apply_schema
from sinks.clickhouse.writer import (
    AlertRow,
    TickRow,
    ValuationRow,
    insert_alerts,
    insert_ticks,
    insert_valuations,
)
from sinks.errors import SinkBusy, SinkRejected, SinkUnavailable
from sinks.retry import RetryPolicy, with_retry

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z


@pytest.fixture
def ch(engine: ClickHouseClient) -> Iterator[ClickHouseClient]:
    client = engine.for_database(f"t_{uuid.uuid4().hex[:12]}")
    apply_schema(client)
    yield client
    engine.command(f"DROP DATABASE IF EXISTS `{client.database}` SYNC")


def count(ch: ClickHouseClient, table: str, final: bool = False) -> int:
    return int(ch.query_rows(f"SELECT count() FROM {ch.table(table)}{' FINAL' * final}")[0][0])


def ticks(n: int, provider: str = "alpha", start_ms: int = T0) -> list[TickRow]:
    return [
        TickRow(
            "AAPL", Decimal("190.5") + i, start_ms + i * 1000, provider, Decimal(i), "USD", f"t{i}"
        )
        for i in range(n)
    ]


def test_schema_is_safe_to_rerun_and_converges_the_ttl(ch: ClickHouseClient):
    apply_schema(ch, ticks_ttl_days=30)
    insert_ticks(ch, ticks(3, start_ms=int(time.time() * 1000) - 3_600_000))
    apply_schema(ch, ticks_ttl_days=7)
    apply_schema(ch, ticks_ttl_days=7)

    def engine_full() -> str:
        return str(
            ch.query_rows(
                "SELECT engine_full FROM system.tables WHERE database = {db:String}"
                " AND name = 'ticks'",
                parameters={"db": ch.database},
            )[0][0]
        )

    assert "toIntervalDay(7)" in engine_full()
    apply_schema(ch, ticks_ttl_days=0)
    assert " TTL " not in engine_full()
    tables = {
        row[0]
        for row in ch.query_rows(
            "SELECT name FROM system.tables WHERE database = {db:String}",
            parameters={"db": ch.database},
        )
    }
    assert set(CLICKHOUSE_TABLES) <= tables
    assert count(ch, "ticks") == 3  # re-running the DDL kept the data


def test_tick_replays_converge_in_any_batch_split(ch: ClickHouseClient):
    rows = ticks(50)
    assert insert_ticks(ch, rows, batch_size=20) == 50
    insert_ticks(ch, rows, batch_size=20)  # same batches: dropped by their tokens
    assert count(ch, "ticks") == 50
    insert_ticks(ch, list(reversed(rows)), batch_size=7)  # other batches: stored again...
    assert count(ch, "ticks") > 50
    assert count(ch, "ticks", final=True) == 50  # ...but one row per (symbol, ts, provider)
    insert_ticks(ch, ticks(5, provider="beta"))
    assert count(ch, "ticks", final=True) == 55
    [(price, ts)] = ch.query_rows(
        f"SELECT price, ts FROM {ch.table('ticks')} FINAL WHERE provider = 'alpha'"
        " ORDER BY ts DESC LIMIT 1"
    )
    assert price == Decimal("239.5")
    assert int(ts.timestamp() * 1000) == T0 + 49_000 and ts.utcoffset().total_seconds() == 0


def valuation(kind: str, version: int, value: str) -> ValuationRow:
    return ValuationRow(
        "p1", "u1", T0, T0 + 60_000, Decimal(value), Decimal("10"), Decimal("90"),
        Decimal(value) - 90, Decimal("0"), None, "USD", '{"positions": []}', version, kind,
    )  # fmt: skip


def test_valuations_keep_the_highest_version_per_window_and_kind(ch: ClickHouseClient):
    insert_valuations(ch, [valuation("history", 1, "100"), valuation("live", 1, "101")])
    insert_valuations(ch, [valuation("history", 3, "103"), valuation("history", 2, "102")])
    rows = ch.query_rows(
        f"SELECT window_kind, market_value, version, day_change FROM {ch.table('valuations')}"
        " FINAL ORDER BY window_kind"
    )
    assert rows == [("history", Decimal("103"), 3, None), ("live", Decimal("101"), 1, None)]


def test_alerts_are_stored_once_per_alert_id(ch: ClickHouseClient):
    alert = AlertRow(
        "a1", "r1", "u1", None, "AAPL", "price_above", Decimal("201.25"), Decimal("200"),
        "AAPL above 200", T0, "{}",
    )  # fmt: skip
    insert_alerts(ch, [alert])
    insert_alerts(ch, [alert, alert._replace(alert_id="a2", portfolio_id="p1")])
    rows = ch.query_rows(
        f"SELECT alert_id, portfolio_id, observed FROM {ch.table('alerts')} FINAL ORDER BY alert_id"
    )
    assert rows == [("a1", None, Decimal("201.25")), ("a2", "p1", Decimal("201.25"))]


def test_ticks_are_stored_exactly_whatever_their_text(ch: ClickHouseClient):
    """Ticks go as TabSeparated text: every value the contract admits must
    come back unchanged (free-text ids, exponents, nulls, the edge instants)."""
    odd = [
        TickRow("BRK.B", Decimal("1E+2"), 0, "alpha", None, "USD", "tab\there\nnew\\line\r"),
        TickRow("^GSPC", Decimal("0.000000000001"), 7_258_118_399_999, "b-2", Decimal("5E-7"),
                "EUR", None),
        TickRow("EURUSD", Decimal("1.0845"), T0 + 7, "gamma_1", Decimal(0), "USD", "ünï \\N"),
    ]  # fmt: skip
    assert insert_ticks(ch, odd) == 3
    stored = ch.query_rows(
        "SELECT symbol, price, toUnixTimestamp64Milli(ts), provider, volume, currency, tick_id"
        f" FROM {ch.table('ticks')} FINAL ORDER BY ts"
    )
    assert [TickRow(*row) for row in stored] == sorted(odd, key=lambda t: t.ts_ms)


def test_bad_rows_are_rejected_without_retries(ch: ClickHouseClient):
    bad = ticks(1)[0]._replace(price=None)  # type: ignore[arg-type]
    with pytest.raises(SinkRejected):
        insert_ticks(ch, [bad], retry=RetryPolicy(max_outage_s=300, first_delay_s=30))


def test_retry_policy_retries_only_unavailable():
    """The policy every sink shares (ClickHouse included): retry
    ``SinkUnavailable`` until ``max_outage_s`` has passed, raise anything else."""
    calls: list[int] = []
    now = [0.0]

    def sleep(delay: float) -> None:
        now[0] += delay

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise SinkUnavailable("clickhouse", "connection refused")
        return "ok"

    policy = RetryPolicy(max_outage_s=60.0, first_delay_s=1.0)
    assert with_retry("clickhouse", flaky, policy, sleep, lambda: now[0]) == "ok"
    assert len(calls) == 3 and 0 < now[0] < 60

    def down() -> None:
        calls.append(1)
        raise SinkUnavailable("clickhouse", "connection refused")

    calls.clear()
    now[0] = 0.0
    with pytest.raises(SinkUnavailable):
        with_retry("clickhouse", down, policy, sleep, lambda: now[0])
    assert now[0] >= 60 and len(calls) > 3

    def rejected() -> None:
        calls.append(1)
        raise SinkRejected("clickhouse", "bad type")

    calls.clear()
    with pytest.raises(SinkRejected):
        with_retry("clickhouse", rejected, policy, sleep, lambda: now[0])
    assert len(calls) == 1


def test_unreachable_server_is_unavailable():
    with pytest.raises(SinkUnavailable, match=r"127\.0\.0\.1:1"):
        open_clickhouse("http://127.0.0.1:1", "folio")


def test_bad_database_names_and_dsns_are_rejected(engine: ClickHouseClient):
    with pytest.raises(SinkRejected):
        engine.for_database("x; DROP TABLE y")
    with pytest.raises(SinkRejected, match="absolute"):
        open_clickhouse("chdb://relative/dir", "folio")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT
    )


OPEN_AND_REPORT = """
import sys
from sinks.clickhouse.client import open_clickhouse
from sinks.errors import SinkBusy
try:
    open_clickhouse(sys.argv[1] if len(sys.argv) > 1 else {dsn!r}, "folio").close()
    print("OPENED")
except SinkBusy as exc:
    print("BUSY", exc)
"""


def test_second_process_gets_busy_naming_the_owner(engine: ClickHouseClient, engine_dir: Path):
    result = run_python(OPEN_AND_REPORT.format(dsn=f"chdb://{engine_dir}"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("BUSY"), result.stdout + result.stderr
    assert f"pid {os.getpid()}" in result.stdout
    assert str(engine_dir) in result.stdout
    owner = json.loads(Path(f"{engine_dir}.owner.json").read_text())
    assert owner["pid"] == os.getpid()


def test_owner_lock_is_released(tmp_path: Path):
    directory = tmp_path / "other"
    lock = acquire_owner_lock(directory)
    held = run_python(
        "from pathlib import Path; from sinks.clickhouse.client import acquire_owner_lock\n"
        "from sinks.errors import SinkBusy\n"
        f"try:\n    acquire_owner_lock(Path({str(directory)!r})); print('GOT')\n"
        "except SinkBusy as exc:\n    print('BUSY', exc)\n"
    )
    assert held.stdout.startswith("BUSY") and f"pid {os.getpid()}" in held.stdout
    with pytest.raises(SinkBusy):  # this process too: one owner per directory
        acquire_owner_lock(directory)
    lock.release()
    assert not Path(f"{directory}.owner.json").exists()
    # A real engine on the released directory opens in a fresh process.
    opened = run_python(OPEN_AND_REPORT.format(dsn=f"chdb://{directory}"))
    assert opened.stdout.strip() == "OPENED", opened.stdout + opened.stderr
