"""One user's dashboard: what changed, which cards to recompute, and the
cards whose content actually changed.

Card versions: a card's ``version`` is the user's event clock (the newest
event time seen: valuation window ends, transaction and alert times) when
it was computed, raised to the previous version + 1 if the clock did not
move, so every change of a card has a strictly greater version and a sink
comparing versions never lets an older card win. ``as_of`` is the clock.
A recomputed card whose body equals the last one is not emitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from flows.dashboard.books import INCOME_TYPES, PortfolioBook, valuation_day
from flows.portfolio.money import datetime_ms
from flows.portfolio.valuation_record import ValuationRecord, decimal_text, iso_ms
from flows.valuation.shard import AppliedTransaction
from schemas.alerts import Alert

PERFORMANCE, INCOME, ALLOCATION, MOVERS, ACTIVITY = (
    "performance",
    "income",
    "allocation",
    "movers",
    "activity",
)
CARDS = (PERFORMANCE, INCOME, ALLOCATION, MOVERS, ACTIVITY)
ON_VALUATION = frozenset({PERFORMANCE, ALLOCATION, MOVERS})


class Card(NamedTuple):
    """One card as published: ``json`` includes ``version`` and ``as_of``."""

    version: int
    json: bytes


class DashboardUpdate(NamedTuple):
    """The cards of one user that changed, by name."""

    user_id: str
    cards: dict[str, Card]


def newest_cards(updates: list[DashboardUpdate]) -> dict[str, dict[str, Card]]:
    """Per user, per card, the highest version in ``updates`` (for sinks)."""
    out: dict[str, dict[str, Card]] = {}
    for update in updates:
        cards = out.setdefault(update.user_id, {})
        for name, card in update.cards.items():
            known = cards.get(name)
            if known is None or card.version > known.version:
                cards[name] = card
    return out


@dataclass(slots=True)
class CardState:
    version: int
    body: bytes  # the body without version/as_of, for change detection


@lru_cache(maxsize=256)
def _iso(ms: int) -> bytes:
    return iso_ms(ms).encode()  # every card of a flush shares a few clocks


def card_json(version: int, as_of_ms: int, body: bytes) -> bytes:
    head = b'{"version":%d,"as_of":"%s"' % (version, _iso(as_of_ms))
    return head + (b"," + body[1:] if len(body) > 2 else b"}")


def _num(value: Any) -> str | None:
    return None if value is None else decimal_text(value)


def transaction_row(applied: AppliedTransaction) -> tuple[int, str, dict[str, Any]]:
    txn = applied.txn
    ms = datetime_ms(txn.executed_at)
    row = {
        "txn_id": txn.txn_id,
        "portfolio_id": txn.portfolio_id,
        "type": txn.type.value,
        "symbol": txn.symbol,
        "quantity": _num(txn.quantity),
        "price": _num(txn.price),
        "amount": _num(txn.amount),
        "currency": txn.currency,
        "executed_at": iso_ms(ms),
    }
    return ms, txn.txn_id, row


def alert_row(alert: Alert) -> tuple[int, str, dict[str, Any]]:
    ms = datetime_ms(alert.triggered_at)
    row = {
        "alert_id": alert.alert_id,
        "kind": alert.kind.value,
        "message": alert.message,
        "portfolio_id": alert.portfolio_id,
        "symbol": alert.symbol,
        "triggered_at": iso_ms(ms),
    }
    return ms, alert.alert_id, row


def _remember(
    rows: list[tuple[int, str, dict[str, Any]]], row: tuple[int, str, dict[str, Any]], keep: int
) -> bool:
    """Insert newest first, at most ``keep``; False if known or too old."""
    if any(r[1] == row[1] for r in rows):
        return False
    rows.append(row)
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    if len(rows) > keep:
        dropped = rows.pop()
        return dropped is not row
    return True


@dataclass(slots=True)
class UserBoard:
    user_id: str
    portfolios: dict[str, PortfolioBook] = field(default_factory=dict)
    clock_ms: int = 0  # newest event time seen
    today: int = -1  # the day of the newest valuation
    history_rev: int = 0  # bumped when a close or flow before today changes
    income_day: int = -1  # the day the income card was last computed for
    dirty: set[str] = field(default_factory=set)
    cards: dict[str, CardState] = field(default_factory=dict)
    transactions: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    alerts: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)

    def book(self, portfolio_id: str) -> PortfolioBook:
        book = self.portfolios.get(portfolio_id)
        if book is None:
            book = self.portfolios[portfolio_id] = PortfolioBook(portfolio_id)
        return book

    def add_valuation(self, record: ValuationRecord) -> None:
        if not self.book(record.portfolio_id).add_valuation(record):
            return
        day = valuation_day(record)
        if day < self.today:
            self.history_rev += 1
        elif day > self.today:
            self.today = day
            for book in self.portfolios.values():
                book.trim(day)
        self.clock_ms = max(self.clock_ms, record.window_end_ms)
        self.dirty |= ON_VALUATION

    def add_applied(self, applied: AppliedTransaction, keep: int) -> None:
        ms, flow_day = self.book(applied.txn.portfolio_id).add_applied(applied)
        if flow_day is not None:
            self.dirty.add(PERFORMANCE)
            if flow_day < self.today:
                self.history_rev += 1
        if applied.txn.type in INCOME_TYPES:
            self.dirty.add(INCOME)
        if _remember(self.transactions, transaction_row(applied), keep):
            self.dirty.add(ACTIVITY)
        self.clock_ms = max(self.clock_ms, ms)

    def add_alert(self, alert: Alert, keep: int) -> None:
        row = alert_row(alert)
        if _remember(self.alerts, row, keep):
            self.dirty.add(ACTIVITY)
        self.clock_ms = max(self.clock_ms, row[0])

    def publish(self, bodies: dict[str, dict[str, Any]]) -> dict[str, Card]:
        """Record the recomputed ``bodies``; the cards that changed."""
        out: dict[str, Card] = {}
        for name, body in bodies.items():
            encoded = orjson.dumps(body)
            previous = self.cards.get(name)
            if previous is not None and previous.body == encoded:
                continue
            version = self.clock_ms
            if previous is not None:
                version = max(version, previous.version + 1)
            self.cards[name] = CardState(version, encoded)
            out[name] = Card(version, card_json(version, self.clock_ms, encoded))
        return out
