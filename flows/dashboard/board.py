"""One user's dashboard: what changed, which cards to recompute, and the
cards whose content actually changed.

Card versions are functions of the inputs a card depends on, never of
when the card happened to be computed, so the same input gives the same
stored cards whatever the batch timing, worker count or crash/restart:

- ``as_of`` = the newest event time among the card's inputs (valuation
  window ends for performance, allocation and movers, plus flow times for
  performance; income and activity: see ``UserBoard.income_as_of`` and
  ``activity_ms``);
- ``version`` = ``as_of`` + the number of inputs the card has absorbed
  (``Deps``). Every new input raises the count, so versions rise strictly
  with content and a sink comparing versions never lets an older card win;
  both terms only depend on the set of inputs, not their interleaving.

A card is emitted when its version rises, even if its body did not change:
otherwise the stored version would depend on which intermediate states
happened to be flushed. A recomputed card with an unchanged version has an
unchanged body and is not emitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from flows.dashboard.books import INCOME_TYPES, PortfolioBook, set_slots, valuation_day
from flows.dashboard.targets import DriftTarget
from flows.portfolio.money import DAY_MS, datetime_ms
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
class Deps:
    """How many inputs of each kind a user's cards have absorbed."""

    valuations: int = 0  # accepted valuations: performance, allocation, movers
    flows: int = 0  # external flows in base currency: performance
    income: int = 0  # buys, sells, dividends, splits: income
    activity: int = 0  # transactions and alerts offered: activity
    targets: int = 0  # target allocation changes: allocation


@dataclass(slots=True)
class UserBoard:
    user_id: str
    portfolios: dict[str, PortfolioBook] = field(default_factory=dict)
    today: int = -1  # the day of the newest valuation
    history_rev: int = 0  # bumped when a close or flow before today changes
    income_day: int = -1  # the day the income card was last computed for
    valuation_ms: int = 0  # newest window end of an accepted valuation
    flow_ms: int = 0  # newest external flow
    income_ms: int = 0  # newest buy, sell, dividend or split
    activity_ms: int = 0  # newest transaction or alert offered
    deps: Deps = field(default_factory=Deps)
    targets: dict[str, dict[str, DriftTarget]] = field(default_factory=dict)  # portfolio -> rules
    dirty: set[str] = field(default_factory=set)
    cards: dict[str, CardState] = field(default_factory=dict)
    transactions: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    alerts: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        set_slots(self, state, UserBoard(state[1]["user_id"]))
        clock = state[1].get("clock_ms")  # before per-card clocks: one for all
        if clock is not None:
            self.valuation_ms = self.flow_ms = self.income_ms = self.activity_ms = clock

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
        self.valuation_ms = max(self.valuation_ms, record.window_end_ms)
        self.deps.valuations += 1
        self.dirty |= ON_VALUATION

    def add_applied(self, applied: AppliedTransaction, keep: int) -> None:
        ms, flow_day = self.book(applied.txn.portfolio_id).add_applied(applied)
        if flow_day is not None:
            self.dirty.add(PERFORMANCE)
            self.deps.flows += 1
            self.flow_ms = max(self.flow_ms, ms)
            if flow_day < self.today:
                self.history_rev += 1
        if applied.txn.type in INCOME_TYPES:
            self.dirty.add(INCOME)
            self.deps.income += 1
            self.income_ms = max(self.income_ms, ms)
        self._offer(self.transactions, transaction_row(applied), keep)

    def add_alert(self, alert: Alert, keep: int) -> None:
        self._offer(self.alerts, alert_row(alert), keep)

    def _offer(
        self,
        rows: list[tuple[int, str, dict[str, Any]]],
        row: tuple[int, str, dict[str, Any]],
        keep: int,
    ) -> None:
        # Counted whether kept or not: whether a row is kept depends on the
        # order rows arrive in, the number offered does not.
        if _remember(rows, row, keep):
            self.dirty.add(ACTIVITY)
        self.deps.activity += 1
        self.activity_ms = max(self.activity_ms, row[0])

    def set_target(self, rule_id: str, target: DriftTarget | None) -> None:
        """Record (or with None forget) a drift rule's target."""
        for portfolio_id, rules in list(self.targets.items()):
            if rule_id in rules and (target is None or target.portfolio_id != portfolio_id):
                del rules[rule_id]
                if not rules:
                    del self.targets[portfolio_id]
                self._target_changed()
        if target is not None and self.targets.get(target.portfolio_id, {}).get(rule_id) != target:
            self.targets.setdefault(target.portfolio_id, {})[rule_id] = target
            self._target_changed()

    def _target_changed(self) -> None:
        self.deps.targets += 1
        self.dirty.add(ALLOCATION)

    def income_as_of(self) -> int:
        """The income card's clock: its newest input, or the start of the
        newest valuation day (a new day moves "this month" and what is next)."""
        return max(self.income_ms, self.today * DAY_MS if self.today >= 0 else 0)

    def publish(self, bodies: dict[str, tuple[int, int, dict[str, Any]]]) -> dict[str, Card]:
        """Record the recomputed cards, name -> (as_of ms, inputs, body); the
        cards whose version rose."""
        out: dict[str, Card] = {}
        for name, (as_of, inputs, body) in bodies.items():
            version = as_of + inputs
            previous = self.cards.get(name)
            if previous is not None and version <= previous.version:
                continue
            encoded = orjson.dumps(body)
            self.cards[name] = CardState(version, encoded)
            out[name] = Card(version, card_json(version, as_of, encoded))
        return out
