"""Currency conversion from FX pair prices, without guessing.

A price of the symbol ``EURUSD`` means 1 EUR = that many USD. To convert
EUR to USD the direct pair ``EURUSD`` is used (multiply) or, only if it is
absent, the inverse pair ``USDEUR`` (divide). Nothing else: no triangulation
through a third currency, no default rate. When neither pair has a price the
conversion returns None and the caller must report the amount as unconverted.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from flows.portfolio.money import div, mul


class FxConverter:
    """Converts into one target currency with one price snapshot.

    Meant to live for one valuation: rate lookups are cached per currency,
    so converting n amounts costs O(n) dictionary lookups.
    """

    __slots__ = ("_cache", "_prices", "target")

    def __init__(self, prices: Mapping[str, Decimal], target: str) -> None:
        self._prices = prices
        self.target = target
        # currency -> (rate, inverted) or None when no pair is priced
        self._cache: dict[str, tuple[Decimal, bool] | None] = {}

    def _rate(self, currency: str) -> tuple[Decimal, bool] | None:
        if currency in self._cache:
            return self._cache[currency]
        rate: tuple[Decimal, bool] | None = None
        direct = self._prices.get(currency + self.target)
        if direct is not None and direct > 0:
            rate = (direct, False)
        else:
            inverse = self._prices.get(self.target + currency)
            if inverse is not None and inverse > 0:
                rate = (inverse, True)
        self._cache[currency] = rate
        return rate

    def can_convert(self, currency: str) -> bool:
        return currency == self.target or self._rate(currency) is not None

    def convert(self, amount: Decimal, currency: str) -> Decimal | None:
        """``amount`` of ``currency`` in the target currency (12 places), or None."""
        if currency == self.target:
            return amount
        rate = self._rate(currency)
        if rate is None:
            return None
        value, inverted = rate
        return div(amount, value) if inverted else mul(amount, value)
