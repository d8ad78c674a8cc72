"""``folio portfolio show|benchmark``: one portfolio's positions, value, P&L,
returns against its benchmark and income, for people (tables) or machines
(``--json``)."""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from folio.errors import UsageProblem
from folio.settings import Settings

if TYPE_CHECKING:
    from folio.reports.portfolio import PortfolioReport

app = typer.Typer(
    help="Portfolios: positions, value, P&L, returns and income.", no_args_is_help=True
)

_END_OF_DAY = time(23, 59, 59, 999_000, tzinfo=UTC)


def parse_as_of(text: str | None) -> datetime:
    """Now, an ISO-8601 instant with an offset, or a date (the end of that UTC day)."""
    if text is None:
        return datetime.now(UTC)
    text = text.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), _END_OF_DAY)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageProblem(f"--as-of {text!r} is not a date or an ISO-8601 instant") from exc
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise UsageProblem(f"--as-of {text!r} needs a timezone offset (e.g. Z)")
    return moment.astimezone(UTC)


@app.command("show")
def show(
    ctx: typer.Context,
    portfolio_id: str = typer.Argument(..., help="The portfolio_id."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document for machines."),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Date (end of that UTC day) or ISO-8601 instant; default now."
    ),
) -> None:
    """Positions, value, P&L, returns (TWR, XIRR) against the benchmark, and income."""
    from folio.reports import build_report, report_json
    from folio.reports.pg_reads import load_portfolio, pg_connection
    from folio.store import open_store
    from sinks.errors import SinkBusy

    settings: Settings = ctx.obj
    moment = parse_as_of(as_of)
    dsn = settings.postgres_dsn.get_secret_value()
    with pg_connection(dsn) as conn:  # an unknown id fails before ClickHouse opens
        if load_portfolio(conn, portfolio_id) is None:
            raise UsageProblem(f"unknown portfolio {portfolio_id!r}")
    with ExitStack() as stack:
        note = None
        try:
            client = stack.enter_context(open_store(settings))
        except SinkBusy as exc:
            client, note = None, f"returns need ClickHouse, which is busy: {exc}"
        report = build_report(dsn, client, portfolio_id, moment)
    if note is not None:
        report = replace(report, notes=[note, *report.notes])
    if as_json:
        typer.echo(json.dumps(report_json(report), indent=2))
    else:
        render(report, Console())


@app.command("benchmark")
def benchmark(
    ctx: typer.Context,
    portfolio_id: str = typer.Argument(..., help="The portfolio_id."),
    symbol: str = typer.Argument(..., help="Benchmark symbol, e.g. SPY or QQQ."),
) -> None:
    """Set the symbol a portfolio's returns are compared with (default SPY)."""
    from folio.reports.pg_reads import set_benchmark

    settings: Settings = ctx.obj
    stored = set_benchmark(settings.postgres_dsn.get_secret_value(), portfolio_id, symbol)
    if stored is None:
        raise UsageProblem(f"unknown portfolio {portfolio_id!r}")
    typer.echo(f"{portfolio_id}: benchmark {stored}")


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _plain(value: Decimal | None) -> str:
    if value is None:
        return "-"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _pct(value: Decimal | None) -> str:
    return "-" if value is None else f"{value * 100:+.2f}%"


def _amounts(amounts: dict[str, Decimal]) -> str:
    return ", ".join(f"{_money(v)} {c}" for c, v in sorted(amounts.items())) or "0"


def render(report: PortfolioReport, console: Console) -> None:
    """The report as rich tables."""
    p = report.portfolio
    title = f"{p.portfolio_id}" + (f" ({p.name})" if p.name else "")
    console.print(
        f"[bold]{title}[/bold]  user {p.user_id}  as of {report.as_of:%Y-%m-%d %H:%M} UTC"
    )
    _render_value(report, console)
    _render_positions(report, console)
    _render_returns(report, console)
    _render_income(report, console)
    for note in report.notes:
        console.print(f"note: {note}", markup=False, highlight=False)


def _render_value(report: PortfolioReport, console: Console) -> None:
    v, ccy = report.valuation, report.portfolio.base_currency
    if v is None:
        console.print("no transactions yet")
        return
    table = Table("value", ccy, title="Value and P&L", show_header=False)
    rows: list[tuple[str, Any]] = [
        ("market value", v.market_value),
        ("holdings", v.holdings_value),
        ("cash", v.cash),
        ("day change", v.day_change),
        ("cost basis", v.cost_basis),
        ("unrealized P&L", v.unrealized_pnl),
        ("realized P&L", v.realized_pnl),
        ("net deposits", report.net_deposits),
        ("total gain", report.total_gain),
    ]
    for label, amount in rows:
        table.add_row(label, _money(amount))
    table.add_row("fees paid", _amounts(report.fees_paid))
    if v.unpriced:
        table.add_row("unpriced", ", ".join(v.unpriced))
    if v.unconverted:
        table.add_row("not converted", _amounts(v.unconverted))
    console.print(table)


def _render_positions(report: PortfolioReport, console: Console) -> None:
    if not report.positions:
        return
    table = Table(
        "symbol", "quantity", "avg cost", "price", "value", "weight", "unrealized", "realized",
        "dividends", title=f"Positions (value in {report.portfolio.base_currency})",
    )  # fmt: skip
    for line in report.positions:
        table.add_row(
            line.symbol,
            _plain(line.quantity),
            _money(line.average_cost),
            "-" if line.price is None else f"{_plain(line.price)} {line.currency}",
            _money(line.market_value),
            "-" if line.weight is None else f"{line.weight * 100:.2f}%",
            _money(line.unrealized_pnl),
            _money(line.realized_pnl),
            _money(line.dividends),
        )
    console.print(table)


def _render_returns(report: PortfolioReport, console: Console) -> None:
    returns = report.returns
    if returns is None:
        return
    table = Table(
        "period", "from", "TWR", "MWR (annual)", report.portfolio.benchmark, "outperformance",
        title=f"Returns ({returns.closes} daily closes since {returns.first_close or '-'})",
    )  # fmt: skip
    for name, period in returns.periods.items():
        table.add_row(
            name,
            period.start.isoformat(),
            _pct(period.twr),
            _pct(period.mwr_annualized),
            _pct(period.benchmark),
            _pct(period.outperformance),
        )
    console.print(table)


def _render_income(report: PortfolioReport, console: Console) -> None:
    income = report.income
    if not income.by_month:
        console.print("income: no dividends received yet")
        return
    table = Table("month", "dividends", title="Income by month")
    for month, amounts in list(income.by_month.items())[-12:]:
        table.add_row(month, _amounts(amounts))
    console.print(table)
    yield_on_cost = income.yield_on_cost
    console.print(
        f"trailing 12 months: {_amounts(income.trailing_12m)}; "
        f"projected annual: {_amounts(income.projected_annual)}; "
        f"yield on cost: {'-' if yield_on_cost is None else f'{yield_on_cost * 100:.2f}%'}",
        highlight=False,
    )
