"""The incremental ledger: one ``PortfolioState`` per portfolio, one
``apply`` per transaction, O(1) work each.

Guarantees:

- Each ``txn_id`` is decided once: applied or rejected. A repeat returns
  DUPLICATE (with the original rejection ``reason`` if it was rejected) and
  changes nothing, so the state is a function of the set of transactions
  and their order, however often each one is delivered.
- A rejected transaction (``oversell``, ``split_without_position``,
  ``split_rounds_to_zero``, ``currency_mismatch``, ``missing_field``) leaves
  the state exactly as it was; correcting it takes a new ``txn_id``.
- Applying the same transactions in the same order always gives the same
  state, to the last digit (see ``flows.portfolio.money`` for rounding).
  Average cost depends on order, so feed transactions through
  ``OrderedTransactionBuffer`` to make the result independent of arrival order.

Semantics (all amounts in the transaction's currency):

- BUY   quantity += q; cost basis += q*price + fees; cash -= q*price + fees.
- SELL  realized += q*price - q*avg_cost - fees; cost basis -= q*avg_cost;
        cash += q*price - fees. Selling everything removes the whole cost basis.
- DIVIDEND cash += amount; income by (symbol, currency, month) += amount.
- DEPOSIT / WITHDRAWAL cash +/- amount, recorded as external flows.
- FEE   cash -= amount; fees paid += amount.
- SPLIT quantity *= ratio, cost basis unchanged (the transaction's currency
        is ignored: a split has no money in it).

``fees`` on anything but BUY/SELL is ignored, as the contract says. Cash may
go negative (buying on margin, or deposits not recorded). A symbol has one
quote currency for life: BUY/SELL/DIVIDEND in another is a
``currency_mismatch``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from flows.portfolio.errors import WrongPortfolioError
from flows.portfolio.money import CTX, ZERO, datetime_ms, div, month_key, mul
from flows.portfolio.records import (
    CURRENCY_MISMATCH,
    MISSING_FIELD,
    OVERSELL,
    SPLIT_ROUNDS_TO_ZERO,
    SPLIT_WITHOUT_POSITION,
    ApplyResult,
    ApplyStatus,
    CashFlow,
    DividendPayment,
    Position,
)
from schemas.transactions import Transaction, TxnType

logger = logging.getLogger(__name__)


class _RejectedError(Exception):
    """Internal: a handler found the transaction impossible (before mutating)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _need(value: Decimal | str | None, name: str, txn: Transaction) -> Decimal | str:
    # The contract guarantees these per type; an unvalidated object may not.
    if value is None:
        raise _RejectedError(MISSING_FIELD, f"{txn.type.value} needs {name}")
    return value


def _dec(value: Decimal | None, name: str, txn: Transaction) -> Decimal:
    result = _need(value, name, txn)
    assert isinstance(result, Decimal)
    return result


def _sym(txn: Transaction) -> str:
    result = _need(txn.symbol, "symbol", txn)
    assert isinstance(result, str)
    return result


@dataclass(slots=True)
class PortfolioState:
    """Everything the ledger knows about one portfolio (picklable).

    ``realized`` and ``fees_paid`` are per currency, kept incrementally so a
    valuation never walks closed positions; ``open_symbols`` are the symbols
    with quantity > 0; ``currencies`` every currency ever touched;
    ``applied_ids`` and ``rejected_ids`` (id -> reason) every id decided.
    """

    portfolio_id: str
    user_id: str = ""
    base_currency: str = "USD"
    cash: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    open_symbols: set[str] = field(default_factory=set)
    realized: dict[str, Decimal] = field(default_factory=dict)
    fees_paid: dict[str, Decimal] = field(default_factory=dict)
    income: dict[tuple[str, str, str], Decimal] = field(default_factory=dict)
    dividends: list[DividendPayment] = field(default_factory=list)
    flows: list[CashFlow] = field(default_factory=list)
    currencies: set[str] = field(default_factory=set)
    applied_ids: set[str] = field(default_factory=set)
    rejected_ids: dict[str, str] = field(default_factory=dict)
    seq: int = 0  # transactions applied; versions positions

    def apply(self, txn: Transaction) -> ApplyResult:
        """Apply one transaction exactly once; see the module docstring."""
        if txn.portfolio_id != self.portfolio_id:
            raise WrongPortfolioError(
                f"txn {txn.txn_id} is for {txn.portfolio_id}, not {self.portfolio_id}"
            )
        if txn.txn_id in self.applied_ids:
            return ApplyResult(ApplyStatus.DUPLICATE, txn.txn_id, symbol=txn.symbol)
        if txn.txn_id in self.rejected_ids:
            reason = self.rejected_ids[txn.txn_id]
            return ApplyResult(ApplyStatus.DUPLICATE, txn.txn_id, reason, symbol=txn.symbol)
        try:
            with localcontext(CTX):
                symbol, currency = _HANDLERS[txn.type](self, txn)
        except _RejectedError as rejected:
            logger.debug("rejected %s: %s", txn.txn_id, rejected.detail)
            self.rejected_ids[txn.txn_id] = rejected.reason
            return ApplyResult(
                ApplyStatus.REJECTED, txn.txn_id, rejected.reason, rejected.detail, txn.symbol
            )
        self.applied_ids.add(txn.txn_id)
        self.seq += 1
        self.currencies.add(currency)
        if not self.user_id:
            self.user_id = txn.user_id
        held = False
        if symbol is not None:
            self.positions[symbol].version = self.seq
            held = symbol in self.open_symbols
        return ApplyResult(
            ApplyStatus.APPLIED, txn.txn_id, symbol=symbol, held=held, currency=currency
        )

    def _add(self, book: dict[str, Decimal], currency: str, amount: Decimal) -> None:
        book[currency] = book.get(currency, ZERO) + amount

    def _position(self, symbol: str, currency: str, create: bool) -> Position | None:
        position = self.positions.get(symbol)
        if position is not None and position.currency != currency:
            raise _RejectedError(
                CURRENCY_MISMATCH, f"{symbol} is held in {position.currency}, not {currency}"
            )
        if position is None and create:
            position = Position(symbol, currency)
            self.positions[symbol] = position
        return position

    def _buy(self, txn: Transaction) -> tuple[str | None, str]:
        symbol, currency = _sym(txn), txn.currency
        quantity, price = _dec(txn.quantity, "quantity", txn), _dec(txn.price, "price", txn)
        position = self._position(symbol, currency, create=True)
        assert position is not None
        cost = mul(quantity, price) + txn.fees
        position.quantity += quantity
        position.cost_basis += cost
        position.fees += txn.fees
        self.open_symbols.add(symbol)
        self._add(self.cash, currency, -cost)
        if txn.fees:
            self._add(self.fees_paid, currency, txn.fees)
        return symbol, currency

    def _sell(self, txn: Transaction) -> tuple[str | None, str]:
        symbol, currency = _sym(txn), txn.currency
        quantity, price = _dec(txn.quantity, "quantity", txn), _dec(txn.price, "price", txn)
        position = self._position(symbol, currency, create=False)
        held = position.quantity if position is not None else ZERO
        if position is None or quantity > held:
            raise _RejectedError(OVERSELL, f"sell {quantity} {symbol} but {held} held")
        # Selling everything removes the whole basis: no rounding dust is left.
        removed = (
            position.cost_basis if quantity == held else div(position.cost_basis * quantity, held)
        )
        proceeds = mul(quantity, price)
        pnl = proceeds - removed - txn.fees
        position.quantity -= quantity
        position.cost_basis -= removed
        position.realized_pnl += pnl
        position.fees += txn.fees
        if not position.quantity:
            self.open_symbols.discard(symbol)
        self._add(self.realized, currency, pnl)
        self._add(self.cash, currency, proceeds - txn.fees)
        if txn.fees:
            self._add(self.fees_paid, currency, txn.fees)
        return symbol, currency

    def _dividend(self, txn: Transaction) -> tuple[str | None, str]:
        symbol, currency = _sym(txn), txn.currency
        amount = _dec(txn.amount, "amount", txn)
        position = self._position(symbol, currency, create=True)
        assert position is not None
        ms = datetime_ms(txn.executed_at)
        position.dividends += amount
        key = (symbol, currency, month_key(ms))
        self.income[key] = self.income.get(key, ZERO) + amount
        self.dividends.append(
            DividendPayment(symbol, currency, ms, amount, position.quantity, position.split_factor)
        )
        self._add(self.cash, currency, amount)
        return symbol, currency

    def _external(self, txn: Transaction) -> tuple[str | None, str]:
        amount = _dec(txn.amount, "amount", txn)
        signed = amount if txn.type is TxnType.DEPOSIT else -amount
        self.flows.append(CashFlow(datetime_ms(txn.executed_at), txn.currency, signed, txn.txn_id))
        self._add(self.cash, txn.currency, signed)
        return None, txn.currency

    def _fee(self, txn: Transaction) -> tuple[str | None, str]:
        amount = _dec(txn.amount, "amount", txn)
        self._add(self.cash, txn.currency, -amount)
        self._add(self.fees_paid, txn.currency, amount)
        return None, txn.currency

    def _split(self, txn: Transaction) -> tuple[str | None, str]:
        symbol, ratio = _sym(txn), _dec(txn.ratio, "ratio", txn)
        position = self.positions.get(symbol)
        if position is None or not position.quantity:
            raise _RejectedError(SPLIT_WITHOUT_POSITION, f"split of {symbol}, which is not held")
        quantity = mul(position.quantity, ratio)
        if not quantity:
            # The units would vanish but their cost basis would stay behind.
            raise _RejectedError(SPLIT_ROUNDS_TO_ZERO, f"{position.quantity} x {ratio} rounds to 0")
        position.quantity = quantity
        position.split_factor *= ratio
        return symbol, position.currency


_HANDLERS: dict[TxnType, Callable[[PortfolioState, Transaction], tuple[str | None, str]]] = {
    TxnType.BUY: PortfolioState._buy,
    TxnType.SELL: PortfolioState._sell,
    TxnType.DIVIDEND: PortfolioState._dividend,
    TxnType.DEPOSIT: PortfolioState._external,
    TxnType.WITHDRAWAL: PortfolioState._external,
    TxnType.FEE: PortfolioState._fee,
    TxnType.SPLIT: PortfolioState._split,
}
