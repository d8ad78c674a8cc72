"""Card bodies: pure functions from plain inputs to JSON-ready dicts.

Money and prices are decimal strings (``decimal_text``: fixed-point, no
trailing zeros) in the card's ``currency``; weights and returns are
fractions (0.05 = 5 %) rounded half-even to 6 places. ``version`` and
``as_of`` are added by the board, not here, so equal bodies mean an
unchanged card.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any, NamedTuple

from flows.dashboard.assets import asset_class
from flows.dashboard.series import PeriodReturn
from flows.portfolio.money import CTX, ZERO
from flows.portfolio.valuation_record import decimal_text

FRACTION = Decimal("0.000001")


def text(value: Decimal | None) -> str | None:
    return None if value is None else decimal_text(value)


def fraction(part: Decimal, whole: Decimal) -> Decimal | None:
    """part / whole rounded to 6 places; None when whole is not positive."""
    if whole <= 0:
        return None
    with localcontext(CTX):
        return (part / whole).quantize(FRACTION, rounding=ROUND_HALF_EVEN)


class Holding(NamedTuple):
    """One priced position of one portfolio, from its latest valuation;
    ``value`` in the portfolio's base currency (None: not convertible)."""

    symbol: str
    currency: str
    price: Decimal
    value: Decimal | None


def performance_body(
    currency: str,
    value: Decimal,
    day_change: Decimal | None,
    benchmark: str,
    returns: list[PeriodReturn],
    portfolios: list[str],
    excluded: list[str],
) -> dict[str, Any]:
    """Value, day change (absolute and against the value before it) and the
    returns per period against the benchmark."""
    before = None if day_change is None else value - day_change
    return {
        "currency": currency,
        "value": text(value),
        "day_change": text(day_change),
        "day_change_pct": text(None if before is None else fraction(day_change or ZERO, before)),
        "benchmark": benchmark,
        "returns": {
            r.period: {
                "twr": text(r.twr),
                "benchmark": text(r.benchmark),
                "outperformance": text(r.outperformance),
            }
            for r in returns
        },
        "portfolios": portfolios,
        "excluded": excluded,  # other base currencies: not summed
    }


def _shares(totals: dict[str, Decimal], whole: Decimal, label: str) -> list[dict[str, Any]]:
    rows = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{label: k, "value": text(v), "weight": text(fraction(v, whole))} for k, v in rows]


def allocation_body(
    currency: str, holdings: Iterable[Holding], cash: Decimal, unpriced: Iterable[str]
) -> dict[str, Any]:
    """Holdings (cash excluded) by symbol, asset class and quote currency;
    weights are shares of the priced, converted holdings. ``drift`` (against
    a target allocation) is not computed yet: always None."""
    by_symbol: dict[str, Decimal] = {}
    by_class: dict[str, Decimal] = {}
    by_currency: dict[str, Decimal] = {}
    unconverted: set[str] = set()
    for h in holdings:
        if h.value is None:
            unconverted.add(h.symbol)
            continue
        by_symbol[h.symbol] = by_symbol.get(h.symbol, ZERO) + h.value
    for symbol, value in by_symbol.items():
        kind = asset_class(symbol)
        by_class[kind] = by_class.get(kind, ZERO) + value
    for h in holdings:
        if h.value is not None:
            by_currency[h.currency] = by_currency.get(h.currency, ZERO) + h.value
    total = sum(by_symbol.values(), ZERO)
    return {
        "currency": currency,
        "holdings_value": text(total),
        "cash": text(cash),
        "by_symbol": _shares(by_symbol, total, "symbol"),
        "by_asset_class": _shares(by_class, total, "asset_class"),
        "by_currency": _shares(by_currency, total, "currency"),
        "unpriced": sorted(set(unpriced)),
        "unconverted": sorted(unconverted),
        "drift": None,
    }


class Move(NamedTuple):
    symbol: str
    first: Decimal  # the day's first price
    last: Decimal  # the latest price


def movers_body(day: str, moves: Iterable[Move], count: int) -> dict[str, Any]:
    """Top ``count`` gainers and losers by change against the day's first
    price; unchanged symbols are in neither list."""
    rows = []
    for m in moves:
        change = fraction(m.last - m.first, m.first)
        if change:
            rows.append((change, m))
    rows.sort(key=lambda r: (r[0], r[1].symbol))

    def row(change: Decimal, m: Move) -> dict[str, Any]:
        return {
            "symbol": m.symbol,
            "price": text(m.last),
            "first": text(m.first),
            "change": text(m.last - m.first),
            "change_pct": text(change),
        }

    gainers = [row(c, m) for c, m in reversed(rows) if c > 0][:count]
    losers = [row(c, m) for c, m in rows if c < 0][:count]
    return {"day": day, "gainers": gainers, "losers": losers}


def activity_body(
    transactions: list[dict[str, Any]], alerts: list[dict[str, Any]]
) -> dict[str, Any]:
    """The newest transactions and alerts, newest first (already trimmed)."""
    return {"transactions": transactions, "alerts": alerts}
