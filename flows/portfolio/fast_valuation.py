"""The valuation hot path: ``Valuer.value`` -> ``ValuationRecord``.

Same rules and the same numbers as the reference
``flows.portfolio.valuation.value`` (see its docstring; a property test
checks that the record's JSON parses into exactly the reference model), at
a fraction of the cost: plain ``Decimal`` operators in one local context,
no pydantic, and the JSON assembled from cached pieces with orjson.

What is cached, and why it stays correct:

- per portfolio, its open positions sorted by symbol with each one's JSON
  head (symbol, quantity, currency), valid while ``state`` is the same
  object at the same ledger ``seq`` (every applied transaction bumps it;
  rejected ones change nothing);
- per symbol, the JSON text of its price, valid while the price is the
  same ``Decimal`` object;
- the ISO text of recent window boundaries.

The cache is not state: pickling or copying a ``Valuer`` gives an empty
one, so Bytewax snapshots never carry it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, localcontext
from typing import Any, NamedTuple

import orjson

from flows.portfolio.errors import PortfolioError
from flows.portfolio.fx import FxConverter
from flows.portfolio.ledger import PortfolioState
from flows.portfolio.money import CTX, ONE, SCALE, ZERO, mul
from flows.portfolio.records import Position
from flows.portfolio.valuation_record import ValuationRecord, decimal_text, exponent, iso_ms
from schemas.common import MAX_SCALE, SCHEMA_VERSION

WEIGHT_SCALE = Decimal("0.000001")
_ZERO_WEIGHT = Decimal("0E-6")  # prints as 0.000000, stripped to 0
_NO_VALUE = '"market_value":null,"weight":null,"unrealized_pnl":null}'
_ISO_CACHE_SIZE = 64

# symbol, currency, quantity, its exponent, cost basis,
# '{"symbol":"AAA","quantity":"10","currency":"USD",'
_Entry = tuple[str, str, Decimal, int, Decimal, str]
# the price as given, '"price":"12.5",', the reduced price and its exponent
_PriceEntry = tuple[Decimal, str, int, Decimal]
# JSON head, price text, market value, unrealized P&L (both None: unconverted)
_Row = tuple[str, str, Decimal | None, Decimal | None]


class _Book(NamedTuple):
    state: PortfolioState
    seq: int
    entries: tuple[_Entry, ...]


class _Sums:
    """Totals in the base currency, plus what could not be converted."""

    __slots__ = ("cash", "cost", "holdings", "realized", "unconverted", "unrealized")

    def __init__(self) -> None:
        self.holdings = self.cost = self.unrealized = self.cash = self.realized = ZERO
        self.unconverted: dict[str, Decimal] = {}

    def left_out(self, currency: str, amount: Decimal = ZERO) -> None:
        self.unconverted[currency] = self.unconverted.get(currency, ZERO) + amount


class Valuer:
    """Values portfolios; one per shard (its caches are per process)."""

    __slots__ = ("_books", "_iso", "_prices")

    def __init__(self) -> None:
        self._books: dict[str, _Book] = {}
        self._prices: dict[str, _PriceEntry] = {}
        self._iso: dict[int, str] = {}

    def __reduce__(self) -> tuple[type[Valuer], tuple[()]]:
        return (Valuer, ())

    def forget(self, portfolio_id: str) -> None:
        """Drop one portfolio's cached positions (e.g. when it is removed)."""
        self._books.pop(portfolio_id, None)

    def value(
        self,
        state: PortfolioState,
        prices: Mapping[str, Decimal],
        window_start_ms: int,
        window_end_ms: int,
        previous_close: Decimal | None = None,
    ) -> ValuationRecord:
        """The valuation of ``state`` at the close of [window_start, window_end).

        ``previous_close`` is the previous day's closing ``market_value``;
        ``day_change`` is None without it.
        """
        if not state.user_id:
            raise PortfolioError(f"portfolio {state.portfolio_id} has no user yet (no transaction)")
        sums = _Sums()
        with localcontext(CTX):
            rows, unpriced = self._positions(state, prices, sums)
            _balances(state, prices, sums)
            positions = _positions_json(rows, sums.holdings)
            total = sums.holdings + sums.cash
            day_change = None if previous_close is None else total - previous_close
        totals = [
            decimal_text(x)
            for x in (total, sums.holdings, sums.cash, sums.cost, sums.unrealized, sums.realized)
        ]
        change = None if day_change is None else decimal_text(day_change)
        doc = {
            "portfolio_id": state.portfolio_id,
            "user_id": state.user_id,
            "base_currency": state.base_currency,
            "window_start": self._iso_text(window_start_ms),
            "window_end": self._iso_text(window_end_ms),
            "market_value": totals[0],
            "holdings_value": totals[1],
            "cash": totals[2],
            "cost_basis": totals[3],
            "unrealized_pnl": totals[4],
            "realized_pnl": totals[5],
            "day_change": change,
            "positions": orjson.Fragment(positions),
            "unpriced": unpriced,
            "unconverted": _unconverted_json(sums.unconverted),
            "version": window_end_ms,
            "schema_version": SCHEMA_VERSION,
        }
        # The record's numbers are parsed back from the texts, so they are
        # the contract's values digit for digit (as the model would hold them).
        market_value, holdings, cash, cost, unrealized, realized = map(Decimal, totals)
        return ValuationRecord(
            state.portfolio_id,
            state.user_id,
            state.base_currency,
            window_start_ms,
            window_end_ms,
            market_value,
            holdings,
            cash,
            cost,
            unrealized,
            realized,
            None if change is None else Decimal(change),
            window_end_ms,
            # orjson's result keeps its whole initial buffer (32 KiB for a
            # 3 KB document); a copy holds only the bytes, for 0.5 us.
            bytes(memoryview(orjson.dumps(doc))),
        )

    def _positions(
        self, state: PortfolioState, prices: Mapping[str, Decimal], sums: _Sums
    ) -> tuple[list[_Row], list[str]]:
        """Pass one over the open positions, in symbol order (the caller
        holds the local decimal context). Sums are exact at 60 digits, so
        unrealized P&L is summed as holdings - their cost, in one step."""
        base = state.base_currency
        price_texts = self._prices
        fx: FxConverter | None = None
        rows: list[_Row] = []
        unpriced: list[str] = []
        holdings = priced_cost = unpriced_cost = ZERO
        for symbol, currency, quantity, quantity_exp, cost, head in self._entries(state):
            price = prices.get(symbol)
            cached = price_texts.get(symbol)
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
                cached = price_texts[symbol] = _price_entry(price)
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

    def _entries(self, state: PortfolioState) -> tuple[_Entry, ...]:
        book = self._books.get(state.portfolio_id)
        if book is not None and book.state is state and book.seq == state.seq:
            return book.entries
        entries = tuple(_entry(state.positions[symbol]) for symbol in sorted(state.open_symbols))
        self._books[state.portfolio_id] = _Book(state, state.seq, entries)
        return entries

    def _iso_text(self, ms: int) -> str:
        text = self._iso.get(ms)
        if text is None:
            if len(self._iso) >= _ISO_CACHE_SIZE:
                self._iso.clear()
            text = self._iso[ms] = iso_ms(ms)
        return text


def _reduce(value: Decimal) -> Decimal:
    """The same number without trailing zeros after the point and with an
    exponent <= 0: products and differences of reduced numbers rarely need
    stripping or an exponent-free rewrite when printed."""
    reduced = value.normalize(CTX)
    return reduced if exponent(reduced) <= 0 else reduced.quantize(ONE, context=CTX)


def _entry(position: Position) -> _Entry:
    quantity = _reduce(position.quantity)
    doc = {
        "symbol": position.symbol,
        "quantity": decimal_text(quantity),
        "currency": position.currency,
    }
    head = orjson.dumps(doc)[:-1].decode() + ","
    cost = _reduce(position.cost_basis)
    return (position.symbol, position.currency, quantity, exponent(quantity), cost, head)


def _price_entry(price: Decimal) -> _PriceEntry:
    reduced = _reduce(price)
    return (price, f'"price":"{decimal_text(reduced)}",', exponent(reduced), reduced)


def _balances(state: PortfolioState, prices: Mapping[str, Decimal], sums: _Sums) -> None:
    base = state.base_currency
    fx: FxConverter | None = None
    for currency, amount in state.cash.items():
        if currency == base or not amount:
            sums.cash += amount
            continue
        fx = fx or FxConverter(prices, base)
        converted = fx.convert(amount, currency)
        if converted is None:
            sums.left_out(currency, amount)
        else:
            sums.cash += converted
    for currency, amount in state.realized.items():
        if currency == base or not amount:
            sums.realized += amount
            continue
        fx = fx or FxConverter(prices, base)
        converted = fx.convert(amount, currency)
        if converted is None:
            sums.left_out(currency)
        else:
            sums.realized += converted


def _positions_json(rows: list[_Row], holdings: Decimal) -> str:
    """Pass two: weights need the holdings total (caller holds the context).

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


def _unconverted_json(unconverted: dict[str, Decimal]) -> dict[str, Any]:
    if not unconverted:
        return {}
    return {currency: decimal_text(unconverted[currency]) for currency in sorted(unconverted)}
