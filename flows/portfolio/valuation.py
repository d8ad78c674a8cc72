"""Value one portfolio with one price snapshot: O(open positions + currencies).

``value(state, prices, ...)`` reads the ledger state and a mapping of symbol
-> latest price (prices in the position's quote currency; FX pairs such as
``EURUSD`` in the same mapping) and returns a ``schemas.valuation.Valuation``.

This is the reference implementation, written for clarity: it builds the
pydantic model. Flows use ``flows.portfolio.fast_valuation.Valuer``, which
must produce the same document (a property test holds them together).

Guarantees:

- A position with no price is listed in ``unpriced`` and contributes only
  its cost basis (known without a price); it is never valued at zero.
- An amount in a currency with no rate to the base currency (see
  ``flows.portfolio.fx``) is left out of every total and its value (market
  value + cash) is reported in ``unconverted[currency]``. Zero amounts need
  no rate.
- Cost basis and realized P&L are converted at the current rate, not the
  historical one: totals are "today's money", like the market value.
- Deterministic: positions are listed by symbol; all money is rounded
  half-even to 12 places, weights to 6 (so they may not sum to exactly 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, localcontext

from flows.portfolio.errors import PortfolioError
from flows.portfolio.fx import FxConverter
from flows.portfolio.ledger import PortfolioState
from flows.portfolio.money import CTX, ZERO, ms_datetime, mul, tidy
from schemas.valuation import VALUATION_SCHEMA_VERSION, PositionValue, Valuation

WEIGHT_SCALE = Decimal("0.000001")

# (symbol, quantity, price, currency, market value, unrealized) per priced position
_Row = tuple[str, Decimal, Decimal, str, Decimal | None, Decimal | None]


class _Totals:
    """Running sums in the base currency plus what could not be converted."""

    __slots__ = ("cash", "cost_basis", "holdings", "realized", "unconverted", "unrealized")

    def __init__(self) -> None:
        self.holdings = ZERO
        self.cost_basis = ZERO
        self.unrealized = ZERO
        self.cash = ZERO
        self.realized = ZERO
        self.unconverted: dict[str, Decimal] = {}

    def left_out(self, currency: str, amount: Decimal = ZERO) -> None:
        self.unconverted[currency] = self.unconverted.get(currency, ZERO) + amount


def value(
    state: PortfolioState,
    prices: Mapping[str, Decimal],
    window_start_ms: int,
    window_end_ms: int,
    previous_close: Decimal | None = None,
) -> Valuation:
    """The valuation of ``state`` at the close of [window_start, window_end).

    ``previous_close`` is the previous day's closing ``market_value`` (base
    currency, cash included); ``day_change`` is None without it.
    """
    if not state.user_id:
        raise PortfolioError(f"portfolio {state.portfolio_id} has no user yet (no transaction)")
    fx = FxConverter(prices, state.base_currency)
    totals = _Totals()
    with localcontext(CTX):
        rows, unpriced = _positions(state, prices, fx, totals)
        _balances(state, fx, totals)
        market_value = totals.holdings + totals.cash
        day_change = None if previous_close is None else tidy(market_value - previous_close)
    return Valuation.model_construct(
        portfolio_id=state.portfolio_id,
        user_id=state.user_id,
        base_currency=state.base_currency,
        window_start=ms_datetime(window_start_ms),
        window_end=ms_datetime(window_end_ms),
        market_value=tidy(market_value),
        holdings_value=tidy(totals.holdings),
        cash=tidy(totals.cash),
        cost_basis=tidy(totals.cost_basis),
        unrealized_pnl=tidy(totals.unrealized),
        realized_pnl=tidy(totals.realized),
        day_change=day_change,
        positions=[_position_value(row, totals.holdings) for row in rows],
        unpriced=unpriced,
        unconverted={ccy: tidy(amount) for ccy, amount in sorted(totals.unconverted.items())},
        version=window_end_ms,
        schema_version=VALUATION_SCHEMA_VERSION,
    )


def _positions(
    state: PortfolioState, prices: Mapping[str, Decimal], fx: FxConverter, totals: _Totals
) -> tuple[list[_Row], list[str]]:
    rows: list[_Row] = []
    unpriced: list[str] = []
    for symbol in sorted(state.open_symbols):
        position = state.positions[symbol]
        currency = position.currency
        cost = fx.convert(position.cost_basis, currency)
        price = prices.get(symbol)
        if price is None or price <= 0:
            unpriced.append(symbol)
            if cost is None:
                totals.left_out(currency)
            else:
                totals.cost_basis += cost
            continue
        local_value = mul(position.quantity, price)
        market_value = fx.convert(local_value, currency)
        if market_value is None or cost is None:
            totals.left_out(currency, local_value)
            rows.append((symbol, position.quantity, price, currency, None, None))
            continue
        totals.holdings += market_value
        totals.cost_basis += cost
        totals.unrealized += market_value - cost
        rows.append((symbol, position.quantity, price, currency, market_value, market_value - cost))
    return rows, unpriced


def _balances(state: PortfolioState, fx: FxConverter, totals: _Totals) -> None:
    for currency, amount in state.cash.items():
        converted = fx.convert(amount, currency) if amount else ZERO
        if converted is None:
            totals.left_out(currency, amount)
        else:
            totals.cash += converted
    for currency, amount in state.realized.items():
        converted = fx.convert(amount, currency) if amount else ZERO
        if converted is None:
            totals.left_out(currency)
        else:
            totals.realized += converted


def _position_value(row: _Row, holdings: Decimal) -> PositionValue:
    symbol, quantity, price, currency, market_value, unrealized = row
    weight: Decimal | None = None
    if market_value is not None:
        weight = (
            CTX.divide(market_value, holdings).quantize(WEIGHT_SCALE, context=CTX)
            if holdings
            else ZERO
        )
        weight = tidy(weight)
    return PositionValue.model_construct(
        symbol=symbol,
        quantity=tidy(quantity),
        price=tidy(price),
        currency=currency,
        market_value=None if market_value is None else tidy(market_value),
        weight=weight,
        unrealized_pnl=None if unrealized is None else tidy(unrealized),
    )
