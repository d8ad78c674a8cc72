"""``report_json``: a ``PortfolioReport`` as plain JSON-ready data.

Money, quantities and rates are fixed-point strings without trailing zeros
("0.05", never "5E-2" or a float), so consumers parse them exactly; dates
are ISO-8601 (instants in UTC with an offset); unknown values are null.
Returns are fractions (0.05 = 5 %): ``twr`` and benchmark are cumulative
over the period, ``mwr_annualized`` is an annual rate.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from flows.portfolio.income import IncomeSummary
from flows.portfolio.money import tidy
from flows.portfolio.returns import PeriodReturn
from folio.reports.portfolio import PortfolioReport, PositionLine, Returns
from schemas.valuation import Valuation


def num(value: Decimal | None) -> str | None:
    """Fixed-point text of ``value`` without trailing zeros; None stays None."""
    return None if value is None else format(tidy(value), "f")


def _amounts(amounts: dict[str, Decimal]) -> dict[str, str | None]:
    return {key: num(amount) for key, amount in sorted(amounts.items())}


def _when(moment: datetime | date | None) -> str | None:
    return None if moment is None else moment.isoformat()


def report_json(report: PortfolioReport) -> dict[str, Any]:
    """The whole report; see the module docstring for the encoding."""
    portfolio = report.portfolio
    return {
        "portfolio_id": portfolio.portfolio_id,
        "user_id": portfolio.user_id,
        "name": portfolio.name,
        "base_currency": portfolio.base_currency,
        "benchmark": portfolio.benchmark,
        "as_of": _when(report.as_of),
        "prices_as_of": _when(report.prices_as_of),
        "transactions": report.transactions,
        "rejected": dict(sorted(report.rejected.items())),
        "value": _value(report.valuation),
        "positions": [_position(line) for line in report.positions],
        "pnl": {
            "unrealized": num(report.valuation.unrealized_pnl) if report.valuation else None,
            "realized": num(report.valuation.realized_pnl) if report.valuation else None,
            "net_deposits": num(report.net_deposits),
            "unconverted_flows": _amounts(report.unconverted_flows),
            "total_gain": num(report.total_gain),
            "fees_paid": _amounts(report.fees_paid),
        },
        "returns": _returns(report.returns),
        "income": _income(report.income),
        "notes": list(report.notes),
    }


def _value(valuation: Valuation | None) -> dict[str, Any] | None:
    if valuation is None:
        return None
    return {
        "market_value": num(valuation.market_value),
        "holdings_value": num(valuation.holdings_value),
        "cash": num(valuation.cash),
        "cost_basis": num(valuation.cost_basis),
        "day_change": num(valuation.day_change),
        "unpriced": list(valuation.unpriced),
        "unconverted": _amounts(valuation.unconverted),
    }


def _position(line: PositionLine) -> dict[str, Any]:
    return {
        "symbol": line.symbol,
        "currency": line.currency,
        "quantity": num(line.quantity),
        "average_cost": num(line.average_cost),
        "cost_basis": num(line.cost_basis),
        "price": num(line.price),
        "market_value": num(line.market_value),
        "weight": num(line.weight),
        "unrealized_pnl": num(line.unrealized_pnl),
        "realized_pnl": num(line.realized_pnl),
        "dividends": num(line.dividends),
    }


def _period(period: PeriodReturn) -> dict[str, Any]:
    return {
        "start": _when(period.start),
        "end": _when(period.end),
        "twr": num(period.twr),
        "mwr_annualized": num(period.mwr_annualized),
        "benchmark": num(period.benchmark),
        "outperformance": num(period.outperformance),
    }


def _returns(returns: Returns | None) -> dict[str, Any] | None:
    if returns is None:
        return None
    return {
        "daily_closes": returns.closes,
        "first_close": _when(returns.first_close),
        "last_close": _when(returns.last_close),
        "benchmark_closes": returns.benchmark_closes,
        "periods": {name: _period(period) for name, period in returns.periods.items()},
    }


def _income(income: IncomeSummary) -> dict[str, Any]:
    return {
        "by_month": {month: _amounts(amounts) for month, amounts in income.by_month.items()},
        "trailing_12m": _amounts(income.trailing_12m),
        "projected_annual": _amounts(income.projected_annual),
        "yield_on_cost": num(income.yield_on_cost),
        "unconverted": _amounts(income.unconverted),
        "symbols": [
            {
                "symbol": item.symbol,
                "currency": item.currency,
                "trailing_12m": num(item.trailing_12m),
                "payments_12m": item.payments_12m,
                "frequency": item.frequency,
                "projected_annual": num(item.projected_annual),
                "yield_on_cost": num(item.yield_on_cost),
            }
            for item in income.symbols
        ],
    }
