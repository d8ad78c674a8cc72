"""Plain, picklable records the ledger keeps and returns.

Everything here is a slotted dataclass of builtins and ``Decimal`` so a
Bytewax snapshot can pickle portfolio state without custom reducers.
Amounts are in the record's ``currency``; timestamps are epoch ms (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from flows.portfolio.money import ONE, ZERO, div

# Stable rejection reasons (dead-letter ``reason`` codes).
OVERSELL = "oversell"
SPLIT_WITHOUT_POSITION = "split_without_position"
SPLIT_ROUNDS_TO_ZERO = "split_rounds_to_zero"
CURRENCY_MISMATCH = "currency_mismatch"
MISSING_FIELD = "missing_field"


class ApplyStatus(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # txn_id decided before: state untouched
    REJECTED = "rejected"  # impossible transaction: state untouched


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What ``PortfolioState.apply`` did with one transaction.

    ``symbol`` is the position the transaction touched (None for pure cash
    movements) and ``held`` whether that symbol is held (quantity > 0) after
    it; ``currency`` is the currency whose balances it touched. ``reason``
    is set when REJECTED, and on a DUPLICATE of a rejected transaction.
    """

    status: ApplyStatus
    txn_id: str
    reason: str | None = None
    detail: str = ""
    symbol: str | None = None
    held: bool = False
    currency: str | None = None

    @property
    def applied(self) -> bool:
        return self.status is ApplyStatus.APPLIED


@dataclass(slots=True)
class Position:
    """One symbol of one portfolio, in its quote currency.

    Average-cost accounting: ``cost_basis`` is what the units still held cost
    (purchase fees included); ``split_factor`` is the product of every split
    ratio applied, so older per-unit figures can be restated in today's units.
    A position whose quantity drops to zero keeps its record (realized P&L,
    dividends, fees) and its currency.
    """

    symbol: str
    currency: str
    quantity: Decimal = ZERO
    cost_basis: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    dividends: Decimal = ZERO
    fees: Decimal = ZERO
    split_factor: Decimal = ONE
    version: int = 0  # ledger sequence number of the last change

    @property
    def average_cost(self) -> Decimal | None:
        """Cost per unit held (12 places), None when nothing is held."""
        return div(self.cost_basis, self.quantity) if self.quantity else None


@dataclass(frozen=True, slots=True)
class CashFlow:
    """An external cash flow: + deposit into the portfolio, - withdrawal."""

    ms: int
    currency: str
    amount: Decimal
    txn_id: str


@dataclass(frozen=True, slots=True)
class DividendPayment:
    """One dividend received, with the units held when it was paid and the
    position's split factor at that time (for restating in current units)."""

    symbol: str
    currency: str
    ms: int
    amount: Decimal
    units: Decimal
    split_factor: Decimal
