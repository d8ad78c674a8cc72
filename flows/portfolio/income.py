"""Dividend income: by month, trailing twelve months, projected, yield on cost.

Amounts stay in the currency they were paid in (one currency per symbol; see
the ledger). Only the portfolio-wide yield on cost converts, with the same
no-guessing rules as valuation (``flows.portfolio.fx``).

Projection method, per symbol:

1. ``n`` = payments received in the trailing twelve months (as_of minus one
   calendar year, exclusive, to as_of, inclusive).
2. Frequency = n snapped to the nearest of 1, 2, 4, 12 payments a year (ties
   go to the higher one; n > 12 is used as is): a quarterly payer whose
   payments straddle the window edge still counts as quarterly.
3. Projected annual income = last payment x frequency x (units held now /
   units held at that payment, restated for splits since). Held nothing at
   that payment: unscaled; hold nothing now: 0. No payment within the
   trailing twelve months: 0.

Yield on cost = projected annual income / cost basis of the units held now.
Cost: O(dividend payments + open positions) per call, meant for periodic or
on-demand use, not per price tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from flows.portfolio.fx import FxConverter
from flows.portfolio.ledger import PortfolioState
from flows.portfolio.money import CTX, ZERO, div, ms_date, q12
from flows.portfolio.records import DividendPayment
from flows.portfolio.returns import months_before

STANDARD_FREQUENCIES = (1, 2, 4, 12)


@dataclass(frozen=True, slots=True)
class SymbolIncome:
    symbol: str
    currency: str
    trailing_12m: Decimal
    payments_12m: int
    frequency: int  # payments a year used for the projection; 0 if none
    projected_annual: Decimal
    yield_on_cost: Decimal | None  # None when nothing is held (or cost basis is 0)


@dataclass(frozen=True, slots=True)
class IncomeSummary:
    as_of_ms: int
    by_month: dict[str, dict[str, Decimal]]  # YYYY-MM -> currency -> amount
    trailing_12m: dict[str, Decimal]  # currency -> amount
    projected_annual: dict[str, Decimal]  # currency -> amount
    symbols: list[SymbolIncome]
    yield_on_cost: Decimal | None  # base currency; None without prices or cost basis
    unconverted: dict[str, Decimal] = field(default_factory=dict)  # projected, per currency


def snap_frequency(payments: int) -> int:
    """Payments counted in a year -> assumed payments a year (see module doc)."""
    if payments <= 0:
        return 0
    if payments > STANDARD_FREQUENCIES[-1]:
        return payments
    return min(STANDARD_FREQUENCIES, key=lambda f: (abs(f - payments), -f))


def dividends_by_month(
    state: PortfolioState, symbol: str | None = None
) -> dict[str, dict[str, Decimal]]:
    """YYYY-MM -> currency -> dividends received (optionally one symbol), sorted."""
    out: dict[str, dict[str, Decimal]] = {}
    for (sym, currency, month), amount in sorted(state.income.items(), key=lambda i: i[0][2]):
        if symbol is None or sym == symbol:
            per_currency = out.setdefault(month, {})
            per_currency[currency] = per_currency.get(currency, ZERO) + amount
    return out


def _trailing_year(payments: list[DividendPayment], as_of_ms: int) -> list[DividendPayment]:
    """Payments after as_of minus one calendar year (by UTC date), up to as_of."""
    start = months_before(ms_date(as_of_ms), 12)
    return [p for p in payments if p.ms <= as_of_ms and ms_date(p.ms) > start]


def _project(state: PortfolioState, payments: list[DividendPayment]) -> tuple[int, Decimal]:
    frequency = snap_frequency(len(payments))
    if not frequency:
        return 0, ZERO
    last = max(payments, key=lambda p: p.ms)
    position = state.positions[last.symbol]
    if not position.quantity:
        return frequency, ZERO
    annual = last.amount * frequency
    with localcontext(CTX):
        units_then = last.units * (position.split_factor / last.split_factor)
        if units_then > 0:
            annual = annual * position.quantity / units_then
    return frequency, q12(annual)


def income_summary(
    state: PortfolioState, as_of_ms: int, prices: Mapping[str, Decimal] | None = None
) -> IncomeSummary:
    """Income figures of ``state`` as of ``as_of_ms``; ``prices`` (FX pairs)
    enable the portfolio-wide yield on cost in the base currency."""
    recent: dict[str, list[DividendPayment]] = {}
    for payment in _trailing_year(state.dividends, as_of_ms):
        recent.setdefault(payment.symbol, []).append(payment)
    symbols: list[SymbolIncome] = []
    trailing: dict[str, Decimal] = {}
    projected: dict[str, Decimal] = {}
    for symbol in sorted(recent.keys() | state.open_symbols):
        position = state.positions[symbol]
        payments = recent.get(symbol, [])
        received = sum((p.amount for p in payments), ZERO)
        frequency, annual = _project(state, payments) if payments else (0, ZERO)
        yield_on_cost = (
            div(annual, position.cost_basis)
            if position.quantity and position.cost_basis > 0
            else None
        )
        symbols.append(
            SymbolIncome(
                symbol, position.currency, received, len(payments), frequency, annual, yield_on_cost
            )
        )
        trailing[position.currency] = trailing.get(position.currency, ZERO) + received
        projected[position.currency] = projected.get(position.currency, ZERO) + annual
    portfolio_yield, unconverted = _portfolio_yield(state, symbols, prices)
    return IncomeSummary(
        as_of_ms,
        dividends_by_month(state),
        trailing,
        projected,
        symbols,
        portfolio_yield,
        unconverted,
    )


def _portfolio_yield(
    state: PortfolioState, symbols: list[SymbolIncome], prices: Mapping[str, Decimal] | None
) -> tuple[Decimal | None, dict[str, Decimal]]:
    """Sum of converted projections / sum of converted open cost basis."""
    if prices is None:
        return None, {}
    fx = FxConverter(prices, state.base_currency)
    income, cost, unconverted = ZERO, ZERO, dict[str, Decimal]()
    with localcontext(CTX):
        for item in symbols:
            position = state.positions[item.symbol]
            annual = fx.convert(item.projected_annual, item.currency)
            basis = fx.convert(position.cost_basis, item.currency) if position.quantity else ZERO
            if annual is None or basis is None:
                unconverted[item.currency] = (
                    unconverted.get(item.currency, ZERO) + item.projected_annual
                )
                continue
            income += annual
            cost += basis
    return (div(income, cost) if cost > 0 else None), unconverted
