"""One portfolio's report: positions, value, P&L, returns against its
benchmark, and dividend income, as of an instant.

``build_report`` reads from explicit clients and computes with the pure
domain code in ``flows.portfolio``:

- Ledger: the applied transactions in Postgres executed up to ``as_of``,
  replayed in (executed_at, txn_id) order through ``PortfolioState.apply``;
  positions, cost, realized P&L, external flows and income come from it.
- Value: ``flows.portfolio.valuation.value`` of that ledger at the latest
  known prices: the newest stored valuation's position prices (Postgres
  ``latest_valuations`` or ClickHouse ``valuations``, whichever is newer and
  reflects nothing after ``as_of``), with symbols it lacks and FX pairs
  taken from ClickHouse daily closes. Unpriced positions and unconverted
  currencies are reported, never guessed; ``total_gain`` (value minus net
  deposits) is None when anything was left out.
- Returns (ClickHouse only): daily closes of the history valuations and of
  the portfolio's benchmark symbol into ``flows.portfolio.returns.performance``
  (TWR, XIRR, benchmark price return, outperformance per period), with the
  ledger's external flows converted at the latest FX closes.
- Income: ``flows.portfolio.income.income_summary`` of the ledger.

Without ClickHouse (``clickhouse=None``) everything but ``returns`` is
there. An unknown portfolio raises ``UsageProblem``; Postgres and ClickHouse
failures leave as ``SinkError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from flows.portfolio.fx import FxConverter
from flows.portfolio.income import IncomeSummary, income_summary
from flows.portfolio.ledger import PortfolioState
from flows.portfolio.money import ZERO, datetime_ms
from flows.portfolio.returns import PERIODS, PeriodReturn, daily_flows, performance, period_start
from flows.portfolio.valuation import value
from folio.errors import UsageProblem
from folio.reports import ch_reads
from folio.reports.pg_reads import (
    PortfolioRow,
    latest_valuation,
    load_portfolio,
    load_transactions,
    pg_connection,
)
from schemas.transactions import Transaction
from schemas.valuation import Valuation
from sinks.clickhouse.client import ClickHouseClient

# Benchmark closes are read from this long before the earliest period start,
# so a start on a weekend or holiday still finds the close before it.
_BENCHMARK_LOOKBACK = timedelta(days=14)


@dataclass(frozen=True)
class PositionLine:
    """An open position. Ledger figures (quantity, costs, realized P&L,
    dividends) are in its quote ``currency``; ``price`` too. Market figures
    are in the base currency, None when unpriced or not convertible."""

    symbol: str
    currency: str
    quantity: Decimal
    average_cost: Decimal | None
    cost_basis: Decimal
    realized_pnl: Decimal
    dividends: Decimal
    price: Decimal | None
    market_value: Decimal | None
    weight: Decimal | None
    unrealized_pnl: Decimal | None


@dataclass(frozen=True)
class Returns:
    """Performance from ClickHouse daily closes (base currency)."""

    closes: int
    first_close: date | None
    last_close: date | None
    benchmark_closes: int
    periods: dict[str, PeriodReturn]


@dataclass(frozen=True)
class PortfolioReport:
    portfolio: PortfolioRow
    as_of: datetime
    transactions: int  # applied on replay
    rejected: dict[str, str]  # txn_id -> reason, on replay (normally empty)
    prices_as_of: datetime | None  # window end of the stored valuation priced from
    valuation: Valuation | None  # None before the first transaction
    positions: list[PositionLine]
    net_deposits: Decimal  # deposits - withdrawals, base currency, converted ones
    unconverted_flows: dict[str, Decimal]  # net flows without an FX rate, per currency
    total_gain: Decimal | None  # market value - net deposits; None if anything left out
    fees_paid: dict[str, Decimal]
    returns: Returns | None  # None without ClickHouse
    income: IncomeSummary
    notes: list[str] = field(default_factory=list)


def build_report(
    pg_dsn: str, clickhouse: ClickHouseClient | None, portfolio_id: str, as_of: datetime
) -> PortfolioReport:
    """The report of ``portfolio_id`` as of ``as_of`` (aware); see the module docstring."""
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError(f"as_of must be timezone-aware, got {as_of!r}")
    as_of = as_of.astimezone(UTC)
    with pg_connection(pg_dsn) as conn:
        portfolio = load_portfolio(conn, portfolio_id)
        if portfolio is None:
            raise UsageProblem(f"unknown portfolio {portfolio_id!r}")
        txns = load_transactions(conn, portfolio_id, as_of)
        stored = latest_valuation(conn, portfolio_id, as_of)
    state = replay(portfolio, txns)
    notes: list[str] = []
    closes: dict[date, Decimal] | None = None
    prices: dict[str, Decimal] = {}
    if clickhouse is not None:
        if ch_reads.has_schema(clickhouse):
            stored = _newer(stored, ch_reads.latest_valuation(clickhouse, portfolio_id, as_of))
            prices = ch_reads.last_closes(clickhouse, state.open_symbols | fx_pairs(state), as_of)
            closes = ch_reads.daily_closes(clickhouse, portfolio_id, as_of)
        else:
            notes.append("ClickHouse has no tables yet (run `folio migrate`): no returns")
    if stored is not None:
        # The pipeline's own prices are fresher than daily closes.
        prices.update({p.symbol: p.price for p in stored.positions})
    flows, unconverted_flows = daily_flows(state.flows, FxConverter(prices, state.base_currency))
    valuation = _valuation(state, prices, as_of, closes or {})
    returns = None
    if closes is not None and clickhouse is not None:
        returns = _returns(clickhouse, portfolio, closes, flows, as_of, notes)
    notes.extend(_notes(state, stored))
    net_deposits = sum(flows.values(), ZERO)
    return PortfolioReport(
        portfolio=portfolio,
        as_of=as_of,
        transactions=len(state.applied_ids),
        rejected=dict(state.rejected_ids),
        prices_as_of=stored.window_end if stored is not None else None,
        valuation=valuation,
        positions=_positions(state, valuation),
        net_deposits=net_deposits,
        unconverted_flows=unconverted_flows,
        total_gain=_total_gain(valuation, net_deposits, unconverted_flows),
        fees_paid=dict(sorted(state.fees_paid.items())),
        returns=returns,
        income=income_summary(state, datetime_ms(as_of), prices),
        notes=notes,
    )


def replay(portfolio: PortfolioRow, txns: list[Transaction]) -> PortfolioState:
    """The ledger state after ``txns`` (already in ledger order)."""
    state = PortfolioState(portfolio.portfolio_id, base_currency=portfolio.base_currency)
    for txn in txns:
        state.apply(txn)
    return state


def fx_pairs(state: PortfolioState) -> set[str]:
    """Both pair symbols (direct and inverse) of every non-base currency."""
    base = state.base_currency
    return {pair for c in state.currencies if c != base for pair in (c + base, base + c)}


def _newer(first: Valuation | None, second: Valuation | None) -> Valuation | None:
    if first is None or second is None:
        return first or second
    return second if second.version > first.version else first


def _valuation(
    state: PortfolioState, prices: dict[str, Decimal], as_of: datetime, closes: dict[date, Decimal]
) -> Valuation | None:
    if not state.user_id:
        return None  # no transaction yet: nothing to value
    today = as_of.date()
    before = [day for day in closes if day < today]
    previous_close = closes[max(before)] if before else None
    # The window ending 1 ms after as_of is the one that covers as_of.
    end = datetime_ms(as_of) + 1
    return value(state, prices, end, end, previous_close)


def _returns(
    client: ClickHouseClient,
    portfolio: PortfolioRow,
    closes: dict[date, Decimal],
    flows: dict[date, Decimal],
    as_of: datetime,
    notes: list[str],
) -> Returns:
    today = as_of.date()
    inception = min(closes) if closes else today
    since = min(period_start(p, today, inception) for p in PERIODS) - _BENCHMARK_LOOKBACK
    benchmark = ch_reads.symbol_closes(client, portfolio.benchmark, since, as_of)
    if not closes:
        notes.append("no daily closes in ClickHouse yet: returns start with the pipeline")
    if not benchmark:
        notes.append(
            f"no daily closes of benchmark {portfolio.benchmark} (load them with `folio backfill`)"
        )
    return Returns(
        closes=len(closes),
        first_close=min(closes) if closes else None,
        last_close=max(closes) if closes else None,
        benchmark_closes=len(benchmark),
        periods=performance(closes, flows, today, benchmark),
    )


def _positions(state: PortfolioState, valuation: Valuation | None) -> list[PositionLine]:
    priced = {p.symbol: p for p in valuation.positions} if valuation is not None else {}
    lines = []
    for symbol in sorted(state.open_symbols):
        position, market = state.positions[symbol], priced.get(symbol)
        lines.append(
            PositionLine(
                symbol=symbol,
                currency=position.currency,
                quantity=position.quantity,
                average_cost=position.average_cost,
                cost_basis=position.cost_basis,
                realized_pnl=position.realized_pnl,
                dividends=position.dividends,
                price=market.price if market is not None else None,
                market_value=market.market_value if market is not None else None,
                weight=market.weight if market is not None else None,
                unrealized_pnl=market.unrealized_pnl if market is not None else None,
            )
        )
    return lines


def _total_gain(
    valuation: Valuation | None, net_deposits: Decimal, unconverted_flows: dict[str, Decimal]
) -> Decimal | None:
    if valuation is None or valuation.unpriced or valuation.unconverted or unconverted_flows:
        return None
    return valuation.market_value - net_deposits


def _notes(state: PortfolioState, stored: Valuation | None) -> list[str]:
    notes = []
    if state.rejected_ids:
        ids = ", ".join(sorted(state.rejected_ids))
        notes.append(f"{len(state.rejected_ids)} stored transactions rejected on replay: {ids}")
    if stored is not None and stored.base_currency != state.base_currency:
        notes.append(
            f"stored valuations are in {stored.base_currency}, "
            f"the portfolio's base currency is {state.base_currency}"
        )
    if stored is None and state.open_symbols:
        notes.append("no stored valuation up to as_of: prices are daily closes, if any")
    return notes
