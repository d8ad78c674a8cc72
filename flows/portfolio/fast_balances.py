"""Cash, realized P&L and what cannot be converted, for the valuation hot
path (``flows.portfolio.fast_valuation``): the same rules as the reference
``flows.portfolio.valuation``."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from flows.portfolio.fx import FxConverter
from flows.portfolio.ledger import PortfolioState
from flows.portfolio.money import ZERO
from flows.portfolio.valuation_record import decimal_text


class Sums:
    """Totals in the base currency, plus what could not be converted."""

    __slots__ = ("cash", "cost", "holdings", "realized", "unconverted", "unrealized")

    def __init__(self) -> None:
        self.holdings = self.cost = self.unrealized = self.cash = self.realized = ZERO
        self.unconverted: dict[str, Decimal] = {}

    def left_out(self, currency: str, amount: Decimal = ZERO) -> None:
        self.unconverted[currency] = self.unconverted.get(currency, ZERO) + amount


def add_balances(state: PortfolioState, prices: Mapping[str, Decimal], sums: Sums) -> None:
    """Cash and realized P&L of every currency, converted to the base one
    (the caller holds the 60-digit decimal context). Zero amounts need no rate."""
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


def unconverted_json(unconverted: dict[str, Decimal]) -> dict[str, Any]:
    if not unconverted:
        return {}
    return {currency: decimal_text(unconverted[currency]) for currency in sorted(unconverted)}
