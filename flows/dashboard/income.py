"""The income card: ``flows.portfolio.income.income_summary`` per portfolio,
summed per currency (amounts stay in the currency they were paid in).

- ``this_month``: dividends received in the calendar month of ``as_of``.
- ``trailing_12m`` / ``projected_annual``: as ``income_summary`` defines them.
- ``yield_on_cost``: per currency, projected annual income / cost basis of
  the open positions quoted in that currency (no FX needed).
- ``next_payments``: per held symbol with a projected frequency f, the last
  payment's date plus 12/f months, rolled forward by 12/f months until it
  is on or after ``as_of``'s date; amount = projected annual / f. Soonest
  first, then by symbol. An estimate from history, not an announced date.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from flows.dashboard.cards import fraction, text
from flows.portfolio.income import IncomeSummary, income_summary
from flows.portfolio.ledger import PortfolioState
from flows.portfolio.money import ZERO, div, month_key, ms_date
from flows.portfolio.returns import months_before


def _add(book: dict[str, Decimal], currency: str, amount: Decimal) -> None:
    book[currency] = book.get(currency, ZERO) + amount


def _amounts(book: dict[str, Decimal]) -> dict[str, str | None]:
    return {currency: text(amount) for currency, amount in sorted(book.items())}


def _next_payments(
    pid: str, state: PortfolioState, summary: IncomeSummary, as_of_ms: int
) -> list[dict[str, Any]]:
    today = ms_date(as_of_ms)
    last_paid: dict[str, int] = {}
    for payment in state.dividends:
        if payment.ms <= as_of_ms and payment.ms > last_paid.get(payment.symbol, -1):
            last_paid[payment.symbol] = payment.ms
    out = []
    for item in summary.symbols:
        if not item.frequency or not item.projected_annual or item.symbol not in last_paid:
            continue
        step = max(1, 12 // item.frequency)
        due = months_before(ms_date(last_paid[item.symbol]), -step)
        while due < today:
            due = months_before(due, -step)
        out.append(
            {
                "date": due.isoformat(),
                "symbol": item.symbol,
                "portfolio_id": pid,
                "amount": text(div(item.projected_annual, Decimal(item.frequency))),
                "currency": item.currency,
            }
        )
    return out


def income_body(
    books: Iterable[tuple[str, PortfolioState]], as_of_ms: int, count: int
) -> dict[str, Any]:
    """The income card body for one user's portfolios (id, shadow ledger)."""
    month = month_key(as_of_ms)
    this_month: dict[str, Decimal] = {}
    trailing: dict[str, Decimal] = {}
    projected: dict[str, Decimal] = {}
    cost: dict[str, Decimal] = {}
    upcoming: list[dict[str, Any]] = []
    for pid, state in books:
        summary = income_summary(state, as_of_ms)
        for currency, amount in summary.by_month.get(month, {}).items():
            _add(this_month, currency, amount)
        for currency, amount in summary.trailing_12m.items():
            _add(trailing, currency, amount)
        for currency, amount in summary.projected_annual.items():
            _add(projected, currency, amount)
        for symbol in state.open_symbols:
            position = state.positions[symbol]
            _add(cost, position.currency, position.cost_basis)
        upcoming += _next_payments(pid, state, summary, as_of_ms)
    upcoming.sort(key=lambda p: (p["date"], p["symbol"], p["portfolio_id"]))
    yields = {
        currency: text(fraction(projected.get(currency, ZERO), basis))
        for currency, basis in sorted(cost.items())
        if basis > 0
    }
    return {
        "month": month,
        "this_month": _amounts(this_month),
        "trailing_12m": _amounts(trailing),
        "projected_annual": _amounts(projected),
        "yield_on_cost": yields,
        "next_payments": upcoming[:count],
    }
