"""``portfolio.valuations`` (key: portfolio_id): a portfolio's value at the
close of a window, in its base currency.

Totals cover only what could be priced and converted: positions without a
price are listed in ``unpriced`` (never valued at zero), and amounts in a
currency with no FX rate to the base are listed, per currency, in
``unconverted`` (never guessed, never dropped). ``version`` is
``window_end`` in epoch ms: consumers keep the highest.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.common import (
    Currency,
    ExactDecimal,
    PositiveDecimal,
    Symbol,
    UtcDatetime,
)
from schemas.transactions import Identifier

# Version 2 (this release): ``market_value`` is holdings + cash (it was
# holdings only), ``holdings_value`` is new and ``total_value`` is gone. A
# consumer that reads ``market_value`` must look at ``schema_version``.
VALUATION_SCHEMA_VERSION = 2


class PositionValue(BaseModel):
    """One priced holding. ``price`` is in ``currency`` (the position's quote
    currency); ``market_value`` and ``unrealized_pnl`` are in the portfolio's
    base currency and None when ``currency`` has no FX rate to it.
    ``weight`` = market_value / the portfolio's ``holdings_value``,
    6 places, 0 when that total is 0, None when market_value is None."""

    model_config = ConfigDict(frozen=True)

    symbol: Symbol
    quantity: ExactDecimal
    price: PositiveDecimal
    currency: Currency
    market_value: ExactDecimal | None = None
    weight: ExactDecimal | None = None
    unrealized_pnl: ExactDecimal | None = None


class Valuation(BaseModel):
    """Money fields are in ``base_currency``.

    - ``market_value`` = holdings_value + cash: what the portfolio is worth.
    - ``holdings_value``: priced, converted positions (cash excluded).
    - ``cash``: converted cash balances (may be negative).
    - ``cost_basis``: converted cost basis of every open position, priced or not.
    - ``unrealized_pnl``: sum over priced, converted positions of value - cost.
    - ``realized_pnl``: converted realized P&L of all positions, open or closed.
    - ``day_change`` = market_value - the previous day's closing market_value,
      None if unknown.
    - ``unconverted``: per currency, the value (positions + cash) left out of
      the totals; a currency appears (possibly with 0) whenever anything in it
      (also cost basis or realized P&L) was left out.
    """

    model_config = ConfigDict(frozen=True)

    portfolio_id: Identifier
    user_id: Identifier
    base_currency: Currency = "USD"
    window_start: UtcDatetime
    window_end: UtcDatetime
    market_value: ExactDecimal
    holdings_value: ExactDecimal
    cash: ExactDecimal
    cost_basis: ExactDecimal
    unrealized_pnl: ExactDecimal
    realized_pnl: ExactDecimal
    day_change: ExactDecimal | None = None
    positions: list[PositionValue] = Field(default_factory=list)
    unpriced: list[Symbol] = Field(default_factory=list)
    unconverted: dict[Currency, ExactDecimal] = Field(default_factory=dict)
    version: int
    schema_version: int = VALUATION_SCHEMA_VERSION
