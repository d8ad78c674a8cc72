"""Per portfolio, what the dashboard keeps: the latest valuation and the
day's first (the movers' reference prices), daily closes, external flows
per day, and a shadow ledger for income.

The shadow ledger is a ``PortfolioState`` holding only what
``income_summary`` reads (positions with split factors, open symbols,
dividends, income by month, flows), rebuilt from the portfolio shard's
applied transactions and their position rows, which carry the ledger's own
numbers. It relies on the shard emitting each applied transaction once, in
ledger order, which holds across Bytewax recovery because the dashboard's
state is restored from the same epoch as the shard's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from decimal import Decimal, localcontext
from typing import Any

from flows.portfolio.ledger import PortfolioState
from flows.portfolio.money import CTX, DAY_MS, ZERO, datetime_ms, month_key
from flows.portfolio.records import CashFlow, DividendPayment, Position
from flows.portfolio.valuation_record import ValuationRecord
from flows.valuation.shard import AppliedTransaction
from schemas.transactions import TxnType

# Days of closes and flows kept: a 1-year period needs its base close.
RETAIN_DAYS = 400
EXTERNAL = frozenset({TxnType.DEPOSIT, TxnType.WITHDRAWAL})
INCOME_TYPES = frozenset({TxnType.BUY, TxnType.SELL, TxnType.DIVIDEND, TxnType.SPLIT})


def set_slots(obj: Any, state: tuple[None, dict[str, Any]], fresh: Any) -> None:
    """Unpickle a slots dataclass written by an older version: fields it did
    not have take ``fresh``'s values, fields it no longer has are dropped,
    so recovery snapshots survive an upgrade."""
    values = state[1]
    for f in fields(obj):
        setattr(obj, f.name, values[f.name] if f.name in values else getattr(fresh, f.name))


def valuation_day(record: ValuationRecord) -> int:
    """The UTC day a live valuation closes: window end - 1 ms decides."""
    return (record.window_end_ms - 1) // DAY_MS


@dataclass(slots=True)
class PortfolioBook:
    portfolio_id: str
    latest: ValuationRecord | None = None
    opening: ValuationRecord | None = None  # the first valuation of latest's day
    closes: dict[int, Decimal] = field(default_factory=dict)  # day -> market_value
    flows: dict[int, Decimal] = field(default_factory=dict)  # day -> net flow, base currency
    ledger: PortfolioState = field(init=False)

    def __post_init__(self) -> None:
        self.ledger = PortfolioState(self.portfolio_id)

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        set_slots(self, state, PortfolioBook(state[1]["portfolio_id"]))

    def add_valuation(self, record: ValuationRecord) -> bool:
        """Keep ``record`` unless an equal or newer one is known; True if kept."""
        if self.latest is not None and record.version <= self.latest.version:
            return False
        if self.latest is None or valuation_day(record) > valuation_day(self.latest):
            self.opening = record  # records of one portfolio arrive in order
        self.latest = record
        self.ledger.base_currency = record.base_currency
        self.closes[valuation_day(record)] = record.market_value
        return True

    def add_applied(self, applied: AppliedTransaction) -> tuple[int, int | None]:
        """Mirror one applied transaction; returns (its event ms, the day of
        the external flow it recorded, or None)."""
        txn, row = applied
        state = self.ledger
        state.user_id = state.user_id or txn.user_id
        ms = datetime_ms(txn.executed_at)
        if txn.type in EXTERNAL:
            amount = txn.amount or ZERO
            signed = amount if txn.type is TxnType.DEPOSIT else -amount
            state.flows.append(CashFlow(ms, txn.currency, signed, txn.txn_id))
            if txn.currency != state.base_currency:
                return ms, None  # not converted: left out of returns
            day = ms // DAY_MS
            self.flows[day] = self.flows.get(day, ZERO) + signed
            return ms, day
        if row is None:
            return ms, None
        position = state.positions.get(row.symbol)
        if position is None:
            position = state.positions[row.symbol] = Position(row.symbol, row.currency)
        with localcontext(CTX):
            if txn.type is TxnType.SPLIT and txn.ratio is not None:
                position.split_factor *= txn.ratio  # as the ledger does
        position.quantity, position.cost_basis = row.quantity, row.cost_basis
        position.realized_pnl, position.dividends = row.realized_pnl, row.dividends
        position.fees, position.version = row.fees, row.version
        if row.quantity:
            state.open_symbols.add(row.symbol)
        else:
            state.open_symbols.discard(row.symbol)
        if txn.type is TxnType.DIVIDEND and txn.amount is not None:
            key = (row.symbol, row.currency, month_key(ms))
            state.income[key] = state.income.get(key, ZERO) + txn.amount
            state.dividends.append(
                DividendPayment(
                    row.symbol, row.currency, ms, txn.amount, row.quantity, position.split_factor
                )
            )
        return ms, None

    def trim(self, today: int) -> None:
        """Forget closes and flows older than ``RETAIN_DAYS``."""
        oldest = today - RETAIN_DAYS
        for book in (self.closes, self.flows):
            for day in [d for d in book if d < oldest]:
                del book[day]
