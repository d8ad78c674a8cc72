"""Card bodies: pure functions from plain inputs to JSON-ready dicts.

Money and prices are decimal strings (``decimal_text``: fixed-point, no
trailing zeros) in the card's ``currency``; weights and returns are
fractions (0.05 = 5 %) rounded half-even to 6 places, except the
allocation's ``drift`` rows, in percent and percentage points as drift
rules state them (``flows.dashboard.targets``). ``version`` and
``as_of`` are added by the board, not here, so equal bodies mean an
unchanged card.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from itertools import islice
from typing import Any, NamedTuple

from flows.dashboard.assets import asset_class
from flows.dashboard.series import PeriodReturn
from flows.portfolio.money import CTX, ONE, ZERO
from flows.portfolio.valuation_record import decimal_text

FRACTION = Decimal("0.000001")


def text(value: Decimal | None) -> str | None:
    return None if value is None else decimal_text(value)


def fraction(part: Decimal, whole: Decimal) -> Decimal | None:
    """part / whole rounded to 6 places; None when whole is not positive."""
    if whole <= 0:
        return None
    return CTX.divide(part, whole).quantize(FRACTION, context=CTX)  # CTX rounds half-even


class Holding(NamedTuple):
    """One priced position of one portfolio, from its latest valuation;
    ``value`` in the portfolio's base currency (None: not convertible).
    The texts are the valuation's own (already formatted: reused as is)."""

    symbol: str
    currency: str
    price: Decimal
    value: Decimal | None
    price_text: str | None = None
    value_text: str | None = None
    weight_text: str | None = None


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


def _shares(
    totals: dict[str, Decimal], whole: Decimal, label: str, texts: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Rows by value, largest first; ``texts``: values already formatted."""
    rows = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    texts = texts or {}
    out = []
    for key, value in rows:
        weight = (
            decimal_text(CTX.divide(value, whole).quantize(FRACTION, context=CTX))
            if whole > 0
            else None
        )
        out.append({label: key, "value": texts.get(key) or decimal_text(value), "weight": weight})
    return out


def _one_valuation(holdings: list[Holding]) -> list[dict[str, Any]]:
    """By symbol from a single valuation: its weights are the same numbers
    (market value / holdings value, 6 places, half-even), already formatted."""
    rows = sorted(holdings, key=lambda h: (-(h.value or ZERO), h.symbol))
    return [{"symbol": h.symbol, "value": h.value_text, "weight": h.weight_text} for h in rows]


def allocation_body(
    currency: str,
    holdings: list[Holding],
    cash: Decimal,
    unpriced: Iterable[str],
    single: bool = False,
    drift: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Holdings (cash excluded) by symbol, asset class and quote currency;
    weights are shares of the priced, converted holdings. ``single``: the
    holdings are one valuation's positions (each symbol once), whose own
    value and weight texts are reused. ``drift``: per portfolio with a target
    allocation, its drift from it (``flows.dashboard.targets.portfolio_drift``),
    None when no portfolio has one."""
    by_symbol: dict[str, Decimal] = {}
    texts: dict[str, str] = {}  # a symbol held once keeps its valuation's text
    by_class: dict[str, Decimal] = {}
    by_currency: dict[str, Decimal] = {}
    priced: list[Holding] = []
    unconverted: set[str] = set()
    for h in holdings:
        value = h.value
        if value is None:
            unconverted.add(h.symbol)
            continue
        priced.append(h)
        known = by_symbol.get(h.symbol)
        if known is None:
            by_symbol[h.symbol] = value
            if h.value_text:
                texts[h.symbol] = h.value_text
        else:
            by_symbol[h.symbol] = known + value
            texts.pop(h.symbol, None)
        by_currency[h.currency] = by_currency.get(h.currency, ZERO) + value
    for symbol, value in by_symbol.items():
        kind = asset_class(symbol)
        by_class[kind] = by_class.get(kind, ZERO) + value
    total = sum(by_symbol.values(), ZERO)
    reuse = single and total > 0 and all(h.weight_text and h.value_text for h in priced)
    symbols = _one_valuation(priced) if reuse else _shares(by_symbol, total, "symbol", texts)
    return {
        "currency": currency,
        "holdings_value": text(total),
        "cash": text(cash),
        "by_symbol": symbols,
        "by_asset_class": _shares(by_class, total, "asset_class"),
        "by_currency": _shares(by_currency, total, "currency"),
        "unpriced": sorted(set(unpriced)),
        "unconverted": sorted(unconverted),
        "drift": drift,
    }


class Move(NamedTuple):
    symbol: str
    first: Decimal  # the day's first price
    last: Decimal  # the latest price
    first_text: str | None = None  # as the valuation wrote them
    last_text: str | None = None


def movers_body(day: str, moves: Iterable[Move], count: int) -> dict[str, Any]:
    """Top ``count`` gainers and losers by change against the day's first
    price; unchanged symbols are in neither list."""
    # Rank by the exact ratio; format only the rows shown.
    ranked = sorted((CTX.divide(m.last, m.first), m.symbol, m) for m in moves if m.last != m.first)

    def row(m: Move) -> dict[str, Any]:
        return {
            "symbol": m.symbol,
            "price": m.last_text or text(m.last),
            "first": m.first_text or text(m.first),
            "change": text(m.last - m.first),
            "change_pct": text(fraction(m.last - m.first, m.first)),
        }

    gainers = [row(r[2]) for r in islice((r for r in reversed(ranked) if r[0] > ONE), count)]
    losers = [row(r[2]) for r in islice((r for r in ranked if r[0] < ONE), count)]
    return {"day": day, "gainers": gainers, "losers": losers}


def activity_body(
    transactions: list[dict[str, Any]], alerts: list[dict[str, Any]]
) -> dict[str, Any]:
    """The newest transactions and alerts, newest first (already trimmed)."""
    return {"transactions": transactions, "alerts": alerts}
