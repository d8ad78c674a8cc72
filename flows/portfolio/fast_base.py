"""The common case of ``flows.portfolio.fast_valuation``, in fewer steps:
every open position in the portfolio's base currency and priced. Same
numbers and the same text as ``general_rows`` + ``rows_json`` in
``flows.portfolio.fast_rows`` (the caller falls back to those otherwise).

Why it is cheaper: no currency test and no row tuple per position, the
sums taken by ``sum`` (in C) instead of one ``+=`` per position, and the
positions' cost basis summed once per ledger change rather than per window.
Measured, not assumed: exact scaled-integer arithmetic was tried for
quantity x price and the weights, and lost, because printing a scaled int
as a decimal costs more than ``str(Decimal)``; libmpdec does the arithmetic
in ~50-100 ns, the rest is interpreter overhead per position.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from operator import sub
from typing import NamedTuple

import orjson

from flows.portfolio.fast_balances import Sums, add_balances
from flows.portfolio.fast_rows import WEIGHT_SCALE, Entry, PriceEntry, price_entry
from flows.portfolio.ledger import PortfolioState
from flows.portfolio.money import SCALE, ZERO
from flows.portfolio.valuation_record import decimal_text
from schemas.common import MAX_SCALE


class BaseBook(NamedTuple):
    """A portfolio's open positions, all in its base currency, in symbol order."""

    items: tuple[tuple[str, Decimal, int], ...]  # symbol, reduced quantity, its exponent
    heads: tuple[str, ...]  # '{"symbol":"AAA","quantity":"10","currency":"USD",'
    costs: tuple[Decimal, ...]  # reduced cost basis
    cost: Decimal  # their sum


def base_book(entries: tuple[Entry, ...], base: str) -> BaseBook | None:
    """The fast path's view of ``entries``; None if one is in another
    currency (the caller holds the 60-digit context: ``cost`` is exact)."""
    if any(currency != base for _, currency, *_ in entries):
        return None
    costs = tuple(e[4] for e in entries)
    return BaseBook(
        tuple((e[0], e[2], e[3]) for e in entries),
        tuple(e[5] for e in entries),
        costs,
        sum(costs, ZERO),
    )


def base_positions(
    book: BaseBook, prices: Mapping[str, Decimal], price_cache: dict[str, PriceEntry]
) -> tuple[str, Decimal] | None:
    """(positions JSON, holdings value) when every position is priced and
    the holdings are not zero; None otherwise (``general_rows`` reports
    unpriced positions). The caller holds the 60-digit context."""
    get, cached_get = prices.get, price_cache.get
    values: list[Decimal] = []
    price_texts: list[str] = []
    for symbol, quantity, quantity_exp in book.items:
        price = get(symbol)
        cached = cached_get(symbol)
        if cached is None or cached[0] is not price:
            if price is None or price <= 0:
                return None
            cached = price_cache[symbol] = price_entry(price)
        market_value = quantity * cached[3]
        if quantity_exp + cached[2] < -MAX_SCALE:  # else exact: rounding would be a no-op
            market_value = market_value.quantize(SCALE)
        values.append(market_value)
        price_texts.append(cached[1])
    holdings = sum(values, ZERO)
    if not holdings:
        return None  # weights are all zero then: rows_json's case
    return _json(book, price_texts, values, holdings), holdings


def _json(book: BaseBook, price_texts: list[str], values: list[Decimal], holdings: Decimal) -> str:
    """As ``rows_json``, for positions that all have a value (see there for
    the inlined ``decimal_text``)."""
    parts: list[str] = []
    append = parts.append
    rows = zip(book.heads, price_texts, values, map(sub, values, book.costs), strict=True)
    for head, price, market_value, unrealized in rows:
        weight_text = str((market_value / holdings).quantize(WEIGHT_SCALE))
        value_text, pnl_text = str(market_value), str(unrealized)
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
        append(
            f'{head}{price}"market_value":"{value_text}","weight":"{weight_text}",'
            f'"unrealized_pnl":"{pnl_text}"}}'
        )
    return "[" + ",".join(parts) + "]"


class Steady(NamedTuple):
    """What the fast path reuses while the ledger is unchanged, for a
    portfolio whose positions, cash and realized P&L are all in its base
    currency (no rate needed): the document's opening and three totals,
    tidied (value, text)."""

    opening: str  # '{"portfolio_id":"p1","user_id":"u1","base_currency":"USD",'
    cash_amount: Decimal
    cost: tuple[Decimal, str]
    cash: tuple[Decimal, str]
    realized: tuple[Decimal, str]


def tidy(value: Decimal) -> tuple[Decimal, str]:
    """``value`` as the contract writes it, and that text's own value
    (``Decimal(decimal_text(value))``, exponent and all), without the parse:
    normalized, then + 0 so that an integer gets exponent 0 (``5E+1`` ->
    ``50``) and a zero of any sign or exponent becomes ``0``. ``str`` is
    fixed-point unless the value is below 1E-6 (the caller holds the
    60-digit context: no rounding)."""
    tidy = value.normalize() + ZERO
    text = str(tidy)
    return tidy, (format(tidy, "f") if "E" in text else text)


def steady_parts(state: PortfolioState, fast: BaseBook) -> Steady | None:
    """None if a balance is in another currency (it needs a rate); the
    caller holds the 60-digit context."""
    base = state.base_currency
    for balances in (state.cash, state.realized):
        if any(currency != base and amount for currency, amount in balances.items()):
            return None
    sums = Sums()
    add_balances(state, {}, sums)  # base currency and zeros only: no rate is read
    ids = {"portfolio_id": state.portfolio_id, "user_id": state.user_id, "base_currency": base}
    opening = orjson.dumps(ids)[:-1].decode() + ","
    return Steady(opening, sums.cash, tidy(fast.cost), tidy(sums.cash), tidy(sums.realized))
