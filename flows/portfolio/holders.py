"""Which portfolios must be revalued when some prices change.

``HoldersIndex`` maps each symbol to the portfolios holding it (quantity > 0)
and each currency to the portfolios exposed to it other than as their base
currency (cash, positions or P&L ever recorded in it). A changed FX pair
symbol such as ``EURUSD`` affects the portfolios exposed to either side.

Maintenance is incremental: ``record`` after each ``PortfolioState.apply``
is O(1). ``add``/``remove`` (O(open positions + currencies) of one
portfolio) rebuild one portfolio's entries, e.g. after restoring state or
before and after changing its base currency. The answer may include a
portfolio that did not need revaluing (an FX pair it converts through
another rate); it never misses one that did.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flows.portfolio.ledger import PortfolioState
from flows.portfolio.records import ApplyResult
from schemas.currencies import KNOWN_CURRENCIES


def fx_pair(symbol: str) -> tuple[str, str] | None:
    """``("EUR", "USD")`` for ``EURUSD``; None if not two known currency codes."""
    if len(symbol) != 6:
        return None
    base, quote = symbol[:3], symbol[3:]
    if base in KNOWN_CURRENCIES and quote in KNOWN_CURRENCIES and base != quote:
        return base, quote
    return None


@dataclass(slots=True)
class HoldersIndex:
    by_symbol: dict[str, set[str]] = field(default_factory=dict)
    by_currency: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def from_states(cls, states: Iterable[PortfolioState]) -> HoldersIndex:
        index = cls()
        for state in states:
            index.add(state)
        return index

    def record(self, state: PortfolioState, result: ApplyResult) -> None:
        """Follow one ``apply`` result of ``state`` (no-op unless applied)."""
        if not result.applied:
            return
        pid = state.portfolio_id
        if result.symbol is not None:
            if result.held:
                self.by_symbol.setdefault(result.symbol, set()).add(pid)
            else:
                _discard(self.by_symbol, result.symbol, pid)
        if result.currency is not None and result.currency != state.base_currency:
            self.by_currency.setdefault(result.currency, set()).add(pid)

    def add(self, state: PortfolioState) -> None:
        """Index every open position and non-base currency of ``state``."""
        pid = state.portfolio_id
        for symbol in state.open_symbols:
            self.by_symbol.setdefault(symbol, set()).add(pid)
        for currency in state.currencies:
            if currency != state.base_currency:
                self.by_currency.setdefault(currency, set()).add(pid)

    def remove(self, state: PortfolioState) -> None:
        """Undo ``add`` for ``state`` as it is now."""
        pid = state.portfolio_id
        for symbol in state.open_symbols:
            _discard(self.by_symbol, symbol, pid)
        for currency in state.currencies:
            _discard(self.by_currency, currency, pid)

    def holders(self, symbol: str) -> set[str]:
        """Portfolios holding ``symbol`` (a copy)."""
        return set(self.by_symbol.get(symbol, ()))

    def affected(self, symbols: Iterable[str]) -> set[str]:
        """Portfolios whose valuation may change when these symbols' prices
        change: O(changed symbols + result size)."""
        out: set[str] = set()
        for symbol in symbols:
            out.update(self.by_symbol.get(symbol, ()))
            pair = fx_pair(symbol)
            if pair is not None:
                out.update(self.by_currency.get(pair[0], ()))
                out.update(self.by_currency.get(pair[1], ()))
        return out


def _discard(index: dict[str, set[str]], key: str, pid: str) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(pid)
        if not members:
            del index[key]
