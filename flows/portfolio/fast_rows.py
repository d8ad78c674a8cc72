"""Per-position valuation for ``flows.portfolio.fast_valuation``, one
position at a time (any currency, unpriced positions), with the cached
pieces it reuses between windows.

Same numbers as the reference ``flows.portfolio.valuation``: plain
``Decimal`` operators in the caller's 60-digit context (``money.CTX``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import orjson

from flows.portfolio.fast_balances import Sums
from flows.portfolio.fx import FxConverter
from flows.portfolio.money import CTX, ONE, SCALE, ZERO, mul
from flows.portfolio.records import Position
from flows.portfolio.valuation_record import decimal_text, exponent
from schemas.common import MAX_SCALE

WEIGHT_SCALE = Decimal("0.000001")
_ZERO_WEIGHT = Decimal("0E-6")  # prints as 0.000000, stripped to 0
_NO_VALUE = '"market_value":null,"weight":null,"unrealized_pnl":null}'

# symbol, currency, quantity, its exponent, cost basis,
# '{"symbol":"AAA","quantity":"10","currency":"USD",'
Entry = tuple[str, str, Decimal, int, Decimal, str]
# the price as given, '"price":"12.5",', the reduced price's exponent, the reduced price
PriceEntry = tuple[Decimal, str, int, Decimal]
# JSON head, price text, market value, unrealized P&L (both None: unconverted)
Row = tuple[str, str, Decimal | None, Decimal | None]


def reduce(value: Decimal) -> Decimal:
    """The same number without trailing zeros after the point and with an
    exponent <= 0: products and differences of reduced numbers rarely need
    stripping or an exponent-free rewrite when printed."""
    reduced = value.normalize(CTX)
    return reduced if exponent(reduced) <= 0 else reduced.quantize(ONE, context=CTX)


def entry(position: Position) -> Entry:
    quantity = reduce(position.quantity)
    doc = {
        "symbol": position.symbol,
        "quantity": decimal_text(quantity),
        "currency": position.currency,
    }
    head = orjson.dumps(doc)[:-1].decode() + ","
    cost = reduce(position.cost_basis)
    return (position.symbol, position.currency, quantity, exponent(quantity), cost, head)


def price_entry(price: Decimal) -> PriceEntry:
    reduced = reduce(price)
    return (price, f'"price":"{decimal_text(reduced)}",', exponent(reduced), reduced)


def general_rows(
    entries: tuple[Entry, ...],
    prices: Mapping[str, Decimal],
    price_cache: dict[str, PriceEntry],
    base: str,
    sums: Sums,
) -> tuple[list[Row], list[str]]:
    """The open positions, in symbol order (the caller holds the local
    decimal context). Sums are exact at 60 digits, so unrealized P&L is
    summed as holdings - their cost, in one step."""
    fx: FxConverter | None = None
    rows: list[Row] = []
    unpriced: list[str] = []
    holdings = priced_cost = unpriced_cost = ZERO
    for symbol, currency, quantity, quantity_exp, cost, head in entries:
        price = prices.get(symbol)
        cached = price_cache.get(symbol)
        if cached is None or cached[0] is not price:
            if price is None or price <= 0:
                unpriced.append(symbol)
                if currency != base:
                    fx = fx or FxConverter(prices, base)
                    converted_cost = fx.convert(cost, currency)
                    if converted_cost is None:
                        sums.left_out(currency)
                        continue
                    cost = converted_cost
                unpriced_cost += cost
                continue
            cached = price_cache[symbol] = price_entry(price)
        if currency == base:
            # Exact when the exponents allow it: rounding would be a no-op.
            market_value = quantity * cached[3]
            if quantity_exp + cached[2] < -MAX_SCALE:
                market_value = market_value.quantize(SCALE)
        else:
            fx = fx or FxConverter(prices, base)
            converted_cost = fx.convert(cost, currency)
            local_value = mul(quantity, price)
            converted = fx.convert(local_value, currency)
            if converted is None or converted_cost is None:
                sums.left_out(currency, local_value)
                rows.append((head, cached[1], None, None))
                continue
            cost, market_value = converted_cost, converted
        holdings += market_value
        priced_cost += cost
        rows.append((head, cached[1], market_value, market_value - cost))
    sums.holdings = holdings
    sums.cost = priced_cost + unpriced_cost
    sums.unrealized = holdings - priced_cost
    return rows, unpriced


def rows_json(rows: list[Row], holdings: Decimal) -> str:
    """Weights need the holdings total (caller holds the context).

    ``decimal_text`` inlined: ``str`` is the text unless it has an exponent
    or trailing zeros after the point. No value here is a negative zero
    (market values are >= 0; x - x is +0 when rounding half-even).
    """
    parts = []
    for head, price, market_value, unrealized in rows:
        if market_value is None or unrealized is None:
            parts.append(head + price + _NO_VALUE)
            continue
        weight = (market_value / holdings).quantize(WEIGHT_SCALE) if holdings else _ZERO_WEIGHT
        value_text, weight_text, pnl_text = str(market_value), str(weight), str(unrealized)
        if "E" in value_text:
            value_text = decimal_text(market_value)
        elif value_text[-1] == "0" and "." in value_text:
            value_text = value_text.rstrip("0").rstrip(".")
        if weight_text[-1] == "0":  # 6 places and 0 <= weight <= 1: never an exponent
            weight_text = weight_text.rstrip("0").rstrip(".")
        if "E" in pnl_text:
            pnl_text = decimal_text(unrealized)
        elif pnl_text[-1] == "0" and "." in pnl_text:
            pnl_text = pnl_text.rstrip("0").rstrip(".")
        parts.append(
            f'{head}{price}"market_value":"{value_text}","weight":"{weight_text}",'
            f'"unrealized_pnl":"{pnl_text}"}}'
        )
    return "[" + ",".join(parts) + "]"
