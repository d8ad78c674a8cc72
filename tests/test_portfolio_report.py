"""`folio portfolio show`: the report built from real Postgres and chDB,
checked against hand-computed numbers."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from rich.console import Console

from flows.portfolio.ledger import PortfolioState
from flows.portfolio.money import datetime_ms
from flows.portfolio.valuation import value
from flows.valuation.shard import AppliedTransaction
from folio.commands.portfolio import parse_as_of, render
from folio.errors import UsageProblem
from folio.reports import build_report, report_json
from folio.reports.ch_reads import daily_closes
from folio.reports.pg_reads import parse_valuation, set_benchmark
from schemas.transactions import Transaction
from sinks.clickhouse.candles import CandleRow, insert_candles
from sinks.clickhouse.client import ClickHouseClient, acquire_owner_lock
from sinks.clickhouse.schema import apply_schema
from sinks.clickhouse.writer import ValuationRow, insert_valuations
from sinks.postgres.ledger import write_ledger

REPO = Path(__file__).resolve().parents[1]
MINUTE = 60_000
_seq = iter(range(1_000_000))


@pytest.fixture
def ch(engine: ClickHouseClient) -> Iterator[ClickHouseClient]:
    client = engine.for_database(f"t_{uuid.uuid4().hex[:12]}")
    apply_schema(client)
    yield client
    engine.command(f"DROP DATABASE IF EXISTS `{client.database}` SYNC")


def at(day: str, clock: str = "12:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}:00+00:00")


def txn(pid: str, kind: str, when: datetime, **fields: str) -> Transaction:
    return Transaction.model_validate(
        {"txn_id": f"t{next(_seq)}", "portfolio_id": pid, "user_id": "u1", "type": kind,
         "executed_at": when, **fields}
    )  # fmt: skip


def store_ledger(dsn: str, txns: list[Transaction]) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        write_ledger(cur, [AppliedTransaction(t, None) for t in txns])


def ledger(pid: str, txns: list[Transaction]) -> PortfolioState:
    state = PortfolioState(pid)
    for t in sorted(txns, key=lambda t: (t.executed_at, t.txn_id)):
        assert state.apply(t).applied
    return state


def history_row(pid: str, end: datetime, worth: str, version: int = 0, payload: str = "{}",
                kind: str = "history") -> ValuationRow:  # fmt: skip
    end_ms = datetime_ms(end)
    zero = Decimal(0)
    return ValuationRow(
        pid, "u1", end_ms - MINUTE, end_ms, Decimal(worth), zero, zero, zero, zero, None, "USD",
        payload, version or end_ms, kind,
    )  # fmt: skip


def candle(symbol: str, start: datetime, close: str) -> CandleRow:
    ms, price = datetime_ms(start), Decimal(close)
    return CandleRow(symbol, ms, ms + MINUTE, price, price, price, price, Decimal(1), 1, "USD", 1)


# Returns: $1000 in on Jan 2, $1100 more on Jan 4 (both buy AAA), closes
# 1000, 1050, 2200, 1980 on Jan 2-5 and 2000 on Feb 5; SPY 400 on Jan 1,
# 410 on Jan 5, 420 on Feb 5.
AS_OF = datetime(2024, 2, 5, 23, 59, 59, 999_000, tzinfo=UTC)
RETURNS_TXNS = [
    ("DEPOSIT", at("2024-01-02", "10:00"), {"amount": "1000"}),
    ("BUY", at("2024-01-02", "10:01"), {"symbol": "AAA", "quantity": "10", "price": "100"}),
    ("DEPOSIT", at("2024-01-04", "09:00"), {"amount": "1100"}),
    ("BUY", at("2024-01-04", "09:01"), {"symbol": "AAA", "quantity": "10", "price": "110"}),
]


def seed_returns(dsn: str, ch: ClickHouseClient, pid: str) -> None:
    txns = [txn(pid, kind, when, **fields) for kind, when, fields in RETURNS_TXNS]
    store_ledger(dsn, txns)
    latest = value(
        ledger(pid, txns), {"AAA": Decimal(100)}, 0, datetime_ms(at("2024-02-05", "21:00"))
    )
    insert_valuations(ch, [
        history_row(pid, at("2024-01-02"), "990"),
        history_row(pid, at("2024-01-03", "00:00"), "1000"),  # closes Jan 2, not Jan 3
        history_row(pid, at("2024-01-03"), "1040"),
        history_row(pid, at("2024-01-03", "20:00"), "1050"),
        history_row(pid, at("2024-01-04", "10:00"), "2150"),
        history_row(pid, at("2024-01-04", "20:00"), "2200"),
        history_row(pid, at("2024-01-05", "20:00"), "5000", version=1),
        history_row(pid, at("2024-01-05", "20:00"), "1980", version=2),  # replaces 5000
        history_row(pid, at("2024-01-05", "21:00"), "9999", kind="live"),  # never a close
        history_row(pid, at("2024-02-05", "21:00"), "2000", payload=latest.model_dump_json()),
        history_row(pid, at("2024-02-06"), "1"),  # after as_of
        history_row("other", at("2024-02-05", "22:00"), "7"),
    ])  # fmt: skip
    insert_candles(ch, [
        candle("SPY", at("2024-01-01", "15:00"), "400"),
        candle("SPY", at("2024-01-02", "15:00"), "404"),
        candle("SPY", at("2024-01-04", "15:00"), "402"),
        candle("SPY", at("2024-01-05", "14:00"), "405"),
        candle("SPY", at("2024-01-05", "15:00"), "410"),  # the day's close
        candle("SPY", at("2024-02-05", "15:00"), "420"),
        candle("SPY", at("2024-02-06", "15:00"), "999"),  # after as_of
        candle("QQQ", at("2024-01-01", "15:00"), "100"),
        candle("QQQ", at("2024-02-05", "15:00"), "90"),
    ])  # fmt: skip


def npv(rate: Decimal, flows: list[tuple[date, float]]) -> float:
    first = flows[0][0]
    return sum(a / (1 + float(rate)) ** ((d - first).days / 365) for d, a in flows)


def test_returns_against_the_benchmark_from_daily_closes(pg_dsn: str, ch: ClickHouseClient):
    seed_returns(pg_dsn, ch, "p1")
    assert daily_closes(ch, "p1", AS_OF) == {
        date(2024, 1, 2): 1000, date(2024, 1, 3): 1050, date(2024, 1, 4): 2200,
        date(2024, 1, 5): 1980, date(2024, 2, 5): 2000,
    }  # fmt: skip
    report = build_report(pg_dsn, ch, "p1", AS_OF)
    assert report.returns is not None
    assert (report.returns.closes, report.returns.first_close) == (5, date(2024, 1, 2))
    periods = report.returns.periods
    # Since inception: 1000/1000 * 1050/1000 * 2200/(1050+1100) * 1980/2200 * 2000/1980 - 1
    # = -1/43; SPY 420/400 - 1.
    inception = periods["inception"]
    assert inception.twr == Decimal("-0.023255813953")
    assert inception.benchmark == Decimal("0.05")
    assert inception.outperformance == Decimal("-0.073255813953")
    assert inception.mwr_annualized is not None
    flows = [(date(2024, 1, 2), -1000.0), (date(2024, 1, 4), -1100.0), (date(2024, 2, 5), 2000.0)]
    assert abs(npv(inception.mwr_annualized, flows)) < 1e-4
    # One month from the Jan 5 close: 2000/1980 - 1 = 1/99; SPY 420/410 - 1 = 1/41.
    month = periods["1m"]
    assert (month.start, month.twr, month.benchmark) == (
        date(2024, 1, 5), Decimal("0.010101010101"), Decimal("0.024390243902"),
    )  # fmt: skip
    assert month.outperformance == Decimal("-0.014289233801")
    assert month.mwr_annualized is not None
    assert math.isclose(float(month.mwr_annualized), (2000 / 1980) ** (365 / 31) - 1, rel_tol=1e-8)
    # Longer than the history: no number rather than a shorter period's.
    assert periods["3m"].twr is None and periods["ytd"].twr is None and periods["1y"].twr is None

    doc = report_json(report)
    assert doc["returns"]["periods"]["inception"]["twr"] == "-0.023255813953"
    assert doc["returns"]["periods"]["1m"]["outperformance"] == "-0.014289233801"
    assert doc["value"] == {
        "market_value": "2000", "holdings_value": "2000", "cash": "0", "cost_basis": "2100",
        "day_change": "20", "unpriced": [], "unconverted": {},
    }  # fmt: skip
    assert doc["positions"] == [{
        "symbol": "AAA", "currency": "USD", "quantity": "20", "average_cost": "105",
        "cost_basis": "2100", "price": "100", "market_value": "2000", "weight": "1",
        "unrealized_pnl": "-100", "realized_pnl": "0", "dividends": "0",
    }]  # fmt: skip
    assert doc["pnl"]["net_deposits"] == "2100" and doc["pnl"]["total_gain"] == "-100"
    assert doc["prices_as_of"] == "2024-02-05T21:00:00+00:00"
    assert doc["notes"] == []
    json.dumps(doc)  # plain JSON types only

    out = io.StringIO()
    render(report, Console(file=out, width=160))
    text = out.getvalue()
    assert "-2.33%" in text and "+5.00%" in text and "2,000.00" in text


def test_the_benchmark_is_per_portfolio(pg_dsn: str, ch: ClickHouseClient):
    seed_returns(pg_dsn, ch, "p1")
    assert set_benchmark(pg_dsn, "p1", "qqq") == "QQQ"
    assert set_benchmark(pg_dsn, "nope", "QQQ") is None
    returns = build_report(pg_dsn, ch, "p1", AS_OF).returns
    assert returns is not None
    inception = returns.periods["inception"]
    assert inception.benchmark == Decimal("-0.1")  # QQQ 90/100 - 1
    assert inception.outperformance == Decimal("0.076744186047")


def test_missing_benchmark_closes_give_no_numbers_and_a_note(pg_dsn: str, ch: ClickHouseClient):
    seed_returns(pg_dsn, ch, "p1")
    set_benchmark(pg_dsn, "p1", "NOPE")
    report = build_report(pg_dsn, ch, "p1", AS_OF)
    assert report.returns is not None
    inception = report.returns.periods["inception"]
    assert inception.twr == Decimal("-0.023255813953")
    assert inception.benchmark is None and inception.outperformance is None
    assert report.notes == ["no daily closes of benchmark NOPE (load them with `folio backfill`)"]


# Income: 100 KO bought at 50, quarterly dividends, 20 sold at 60 after the
# last one. As of 2024-04-01 the trailing year holds Jun 40, Sep 44, Dec 44,
# Mar 46 = 174; projected 46 x 4 x 80/100 = 147.2 on a cost of 4000.
INCOME_TXNS = [
    ("DEPOSIT", at("2023-01-10", "10:00"), {"amount": "10000"}),
    ("BUY", at("2023-01-10", "10:01"), {"symbol": "KO", "quantity": "100", "price": "50"}),
    ("DIVIDEND", at("2023-03-15"), {"symbol": "KO", "amount": "40"}),
    ("DIVIDEND", at("2023-06-15"), {"symbol": "KO", "amount": "40"}),
    ("DIVIDEND", at("2023-09-15"), {"symbol": "KO", "amount": "44"}),
    ("DIVIDEND", at("2023-12-15"), {"symbol": "KO", "amount": "44"}),
    ("DIVIDEND", at("2024-03-15"), {"symbol": "KO", "amount": "46"}),
    ("SELL", at("2024-03-20"), {"symbol": "KO", "quantity": "20", "price": "60"}),
]
INCOME_AS_OF = at("2024-04-01")


def seed_income(dsn: str, pid: str) -> None:
    txns = [txn(pid, kind, when, **fields) for kind, when, fields in INCOME_TXNS]
    late = txn(pid, "DIVIDEND", at("2024-05-01"), symbol="KO", amount="46")  # after as_of
    store_ledger(dsn, [*txns, late])
    stored = value(
        ledger(pid, txns), {"KO": Decimal(62)}, 0, datetime_ms(at("2024-03-31", "00:00"))
    )
    # Plain SQL: the latest_valuations writer's record type is being reworked.
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO latest_valuations (portfolio_id, user_id, window_start, window_end,"
            " market_value, cash, cost_basis, unrealized_pnl, realized_pnl, payload, version)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (pid, "u1", stored.window_start, stored.window_end, stored.market_value, stored.cash,
             stored.cost_basis, stored.unrealized_pnl, stored.realized_pnl,
             stored.model_dump_json(), stored.version),
        )  # fmt: skip


def test_income_and_positions_without_clickhouse(pg_dsn: str):
    seed_income(pg_dsn, "p2")
    report = build_report(pg_dsn, None, "p2", INCOME_AS_OF)
    assert report.returns is None and report.transactions == 8
    doc = report_json(report)
    income = doc["income"]
    assert income["by_month"] == {
        "2023-03": {"USD": "40"}, "2023-06": {"USD": "40"}, "2023-09": {"USD": "44"},
        "2023-12": {"USD": "44"}, "2024-03": {"USD": "46"},
    }  # fmt: skip
    assert income["trailing_12m"] == {"USD": "174"}
    assert income["projected_annual"] == {"USD": "147.2"}
    assert income["yield_on_cost"] == "0.0368"
    assert income["symbols"][0]["frequency"] == 4
    [position] = doc["positions"]
    assert position == {
        "symbol": "KO", "currency": "USD", "quantity": "80", "average_cost": "50",
        "cost_basis": "4000", "price": "62", "market_value": "4960", "weight": "1",
        "unrealized_pnl": "960", "realized_pnl": "200", "dividends": "214",
    }  # fmt: skip
    # Cash: 10000 - 5000 + 214 dividends + 1200 sale.
    assert doc["value"]["cash"] == "6414" and doc["value"]["market_value"] == "11374"
    assert doc["pnl"]["total_gain"] == "1374" and doc["pnl"]["realized"] == "200"
    assert doc["returns"] is None and doc["prices_as_of"] == "2024-03-31T00:00:00+00:00"


def test_unknown_portfolio_is_a_usage_problem(pg_dsn: str):
    with pytest.raises(UsageProblem, match="unknown portfolio 'ghost'"):
        build_report(pg_dsn, None, "ghost", INCOME_AS_OF)


def test_legacy_valuation_documents_read_in_todays_terms():
    legacy = {
        "portfolio_id": "p", "user_id": "u", "window_start": 0, "window_end": 60_000,
        "market_value": "900", "cash": "100", "total_value": "1000", "cost_basis": "800",
        "unrealized_pnl": "100", "realized_pnl": "0", "version": 60_000,
    }  # fmt: skip
    parsed = parse_valuation(json.dumps(legacy))
    assert parsed is not None
    assert (parsed.market_value, parsed.holdings_value) == (Decimal(1000), Decimal(900))
    assert parse_valuation("not json") is None and parse_valuation("{}") is None


def test_as_of_accepts_dates_and_instants():
    assert parse_as_of("2024-02-05") == AS_OF
    assert parse_as_of("2024-02-05T10:00:00+02:00") == at("2024-02-05", "08:00")
    with pytest.raises(UsageProblem):
        parse_as_of("2024-02-05T10:00:00")


def cli(tmp_path: Path, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "FOLIO_HOME": str(tmp_path / "home"),
        "FOLIO_POSTGRES_DSN": dsn,
        "FOLIO_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'chdb'}",
    }
    return subprocess.run(
        [sys.executable, "-m", "folio.cli", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_cli_unknown_portfolio_is_one_line_exit_2(tmp_path: Path, pg_dsn: str):
    result = cli(tmp_path, pg_dsn, "portfolio", "show", "ghost")
    assert result.returncode == 2
    assert result.stderr == "folio: error: unknown portfolio 'ghost'\n"


def test_cli_busy_clickhouse_still_shows_postgres_parts(tmp_path: Path, pg_dsn: str):
    seed_income(pg_dsn, "p2")
    lock = acquire_owner_lock(tmp_path / "chdb")  # as a running `folio run` would
    try:
        result = cli(tmp_path, pg_dsn, "portfolio", "show", "p2", "--json", "--as-of", "2024-04-01")
    finally:
        lock.release()
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["returns"] is None and doc["income"]["trailing_12m"] == {"USD": "174"}
    assert doc["notes"][0].startswith("returns need ClickHouse, which is busy:")
    assert f"pid {os.getpid()}" in doc["notes"][0]
    assert doc["as_of"] == "2024-04-01T23:59:59.999000+00:00"
