"""Feeding contract records into a ``RuleBook``: the field choices the
Bytewax flow should make, in one place."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal

from flows.alerts.engine import RuleBook
from flows.portfolio.valuation_record import ValuationRecord
from schemas.alerts import Alert, AlertRule
from schemas.common import datetime_to_ms
from schemas.market import ConsolidatedPrice
from schemas.transactions import Transaction, TxnType
from schemas.valuation import Valuation


def observe_price(book: RuleBook, price: ConsolidatedPrice) -> list[Alert]:
    return book.on_price(price.symbol, price.price, price.version)


def observe_valuation(book: RuleBook, valuation: Valuation | ValuationRecord) -> list[Alert]:
    """Portfolio value = ``market_value`` (positions + cash), so a deposit
    counts toward goals; weights as valued (unpriced positions left out).
    Event time = ``version`` (window end). Takes the contract model or the
    flow's ``ValuationRecord``, whose weights are parsed from its JSON only
    when the book reads them (it has rules for that portfolio)."""
    return book.on_valuation(
        valuation.portfolio_id, valuation.market_value, _Weights(valuation), valuation.version
    )


class _Weights(Mapping[str, Decimal]):
    """A valuation's position weights, worked out on first use."""

    def __init__(self, valuation: Valuation | ValuationRecord) -> None:
        self._valuation = valuation
        self._weights: dict[str, Decimal] | None = None

    def _load(self) -> dict[str, Decimal]:
        if self._weights is None:
            v = self._valuation
            if isinstance(v, ValuationRecord):
                self._weights = v.weights()
            else:
                self._weights = {p.symbol: p.weight for p in v.positions if p.weight is not None}
        return self._weights

    def __getitem__(self, symbol: str) -> Decimal:
        return self._load()[symbol]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


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


def subject_key(rule: AlertRule) -> str:
    """The key a rule's state lives under when the flow keeps one ``RuleBook``
    per subject: ``symbol:AAPL`` (prices, feed_stale, pct_move on a symbol)
    or ``portfolio:p1``. Route a rule's upserts and its removal to this key;
    a tombstone carries only the rule_id, so remember the key by rule_id."""
    if rule.symbol is not None and rule.portfolio_id is None:
        return f"symbol:{rule.symbol}"
    return f"portfolio:{rule.portfolio_id}"
