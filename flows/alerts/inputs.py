"""Feeding contract records into a ``RuleBook``: the field choices the
Bytewax flow should make, in one place."""

from __future__ import annotations

from flows.alerts.engine import RuleBook
from schemas.alerts import Alert
from schemas.common import datetime_to_ms
from schemas.market import ConsolidatedPrice
from schemas.transactions import Transaction, TxnType
from schemas.valuation import Valuation


def observe_price(book: RuleBook, price: ConsolidatedPrice) -> list[Alert]:
    return book.on_price(price.symbol, price.price, price.version)


def observe_valuation(book: RuleBook, valuation: Valuation) -> list[Alert]:
    """Portfolio value = ``total_value`` (positions + cash), so a deposit
    counts toward goals; weights as valued (unpriced positions left out).
    Event time = ``version`` (window end)."""
    weights = {p.symbol: p.weight for p in valuation.positions if p.weight is not None}
    return book.on_valuation(
        valuation.portfolio_id, valuation.total_value, weights, valuation.version
    )


def observe_transaction(book: RuleBook, txn: Transaction) -> list[Alert]:
    """Dividends feed dividend_received rules; other transactions are ignored."""
    if txn.type is not TxnType.DIVIDEND or txn.amount is None:
        return []
    return book.on_dividend(
        txn.portfolio_id,
        txn.txn_id,
        txn.amount,
        datetime_to_ms(txn.executed_at),
        symbol=txn.symbol,
        currency=txn.currency,
    )
