"""Compute the dirty cards of one user from the board and shard-wide data.

Which portfolios count: the card currency is the base currency most of the
user's valued portfolios share (ties: alphabetical); portfolios in another
base currency are listed as ``excluded`` and left out of the sums (no FX
guessing). Day change is the sum of the known ``day_change`` of portfolios
valued today (None when none is known).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from flows.dashboard.board import (
    ACTIVITY,
    ALLOCATION,
    INCOME,
    MOVERS,
    PERFORMANCE,
    UserBoard,
)
from flows.dashboard.books import PortfolioBook, valuation_day
from flows.dashboard.cards import (
    FRACTION,
    Holding,
    Move,
    activity_body,
    allocation_body,
    movers_body,
    performance_body,
)
from flows.dashboard.income import income_body
from flows.dashboard.series import PeriodBase, day_date, live_returns, period_bases
from flows.portfolio.money import ZERO

First = tuple[int, Decimal, str | None]  # a symbol's first price of a day: (day, price, text)


@dataclass(frozen=True)
class CardSettings:
    benchmark: str = "SPY"
    activity_items: int = 10
    movers: int = 5
    payments: int = 5


@dataclass
class Benchmark:
    """Daily closes of the benchmark: day -> (ts_ms, price) of the last
    price seen with ``ts`` in that day; ``rev`` rises when a past day changes."""

    closes: dict[int, tuple[int, Decimal]] = field(default_factory=dict)
    rev: int = 0
    newest_day: int = -1

    def add(self, ts_ms: int, price: Decimal) -> None:
        day = ts_ms // 86_400_000
        known = self.closes.get(day)
        if known is not None and known[0] > ts_ms:
            return
        self.closes[day] = (ts_ms, price)
        if day < self.newest_day:
            self.rev += 1
        elif day > self.newest_day:
            self.newest_day = day
            for old in [d for d in self.closes if d < day - 400]:
                del self.closes[old]

    def prices(self) -> dict[int, Decimal]:
        return {day: price for day, (_, price) in self.closes.items()}

    def latest(self, today: int) -> tuple[int, Decimal] | None:
        """The newest (day, price) on or before ``today``."""
        if today >= self.newest_day >= 0:
            return self.newest_day, self.closes[self.newest_day][1]
        days = [d for d in self.closes if d <= today]
        return (max(days), self.closes[max(days)][1]) if days else None


class Caches:
    """Derived data only: pickles as empty, so snapshots never carry it."""

    def __init__(self) -> None:
        self.bases: dict[str, tuple[tuple[Any, ...], list[PeriodBase]]] = {}
        self.parsed: dict[str, tuple[int, list[Holding], list[str]]] = {}

    def __reduce__(self) -> tuple[type[Caches], tuple[()]]:
        return (Caches, ())

    def holdings(self, book: PortfolioBook) -> tuple[list[Holding], list[str]]:
        record = book.latest
        assert record is not None
        cached = self.parsed.get(book.portfolio_id)
        if cached is not None and cached[0] == record.version:
            return cached[1], cached[2]
        doc = orjson.loads(record.json)
        rows = [
            Holding(
                p["symbol"],
                p["currency"],
                Decimal(p["price"]),
                None if p["market_value"] is None else Decimal(p["market_value"]),
                p["price"],
                p["market_value"],
                p["weight"],
            )
            for p in doc["positions"]
        ]
        self.parsed[book.portfolio_id] = (record.version, rows, doc["unpriced"])
        return rows, doc["unpriced"]


def included(board: UserBoard) -> tuple[str, list[PortfolioBook], list[str]]:
    """(card currency, the portfolios it sums, ids of those left out)."""
    valued = [b for _, b in sorted(board.portfolios.items()) if b.latest is not None]
    if not valued:
        return "USD", [], []
    counts = Counter(b.latest.base_currency for b in valued if b.latest is not None)
    currency = min(counts, key=lambda c: (-counts[c], c))
    inside = [b for b in valued if b.latest is not None and b.latest.base_currency == currency]
    return currency, inside, [b.portfolio_id for b in valued if b not in inside]


def _aggregate(series: list[dict[int, Decimal]], before: int) -> dict[int, Decimal]:
    """Per day before ``before``: the sum of each series' last value on or
    before that day (a portfolio not revalued that day kept its value)."""
    days = sorted({d for s in series for d in s if d < before})
    out: dict[int, Decimal] = {}
    for s in series:
        last: Decimal | None = None
        for day in days:
            last = s.get(day, last)
            if last is not None:
                out[day] = out.get(day, ZERO) + last
    return out


def _flows(books: list[PortfolioBook]) -> dict[int, Decimal]:
    out: dict[int, Decimal] = {}
    for book in books:
        for day, amount in book.flows.items():
            out[day] = out.get(day, ZERO) + amount
    return out


class CardMaker:
    def __init__(self, settings: CardSettings, caches: Caches) -> None:
        self.settings = settings
        self.caches = caches

    def bodies(
        self, board: UserBoard, bench: Benchmark, firsts: dict[str, First]
    ) -> dict[str, dict[str, Any]]:
        """Bodies of the board's dirty cards (clears the dirty set)."""
        if board.today > board.income_day and board.income_day >= 0:
            board.dirty.add(INCOME)
        dirty, board.dirty = board.dirty, set()
        currency, books, excluded = included(board)
        out: dict[str, dict[str, Any]] = {}
        if books and PERFORMANCE in dirty:
            out[PERFORMANCE] = self._performance(board, currency, books, excluded, bench)
        if books and ALLOCATION in dirty:
            out[ALLOCATION] = self._allocation(currency, books)
        if books and MOVERS in dirty:
            out[MOVERS] = self._movers(board, books, firsts)
        if INCOME in dirty:
            board.income_day = max(board.today, 0)
            as_of = max(board.clock_ms, 0)
            ledgers = [(pid, b.ledger) for pid, b in sorted(board.portfolios.items())]
            out[INCOME] = income_body(ledgers, as_of, self.settings.payments)
        if ACTIVITY in dirty:
            out[ACTIVITY] = activity_body(
                [r[2] for r in board.transactions], [r[2] for r in board.alerts]
            )
        return out

    def _performance(
        self,
        board: UserBoard,
        currency: str,
        books: list[PortfolioBook],
        excluded: list[str],
        bench: Benchmark,
    ) -> dict[str, Any]:
        today = board.today
        ids = tuple(b.portfolio_id for b in books)
        key = (today, board.history_rev, bench.rev, ids)
        cached = self.caches.bases.get(board.user_id)
        if cached is None or cached[0] != key:
            closes = _aggregate([b.closes for b in books], today)
            bases = period_bases(closes, _flows(books), today, bench.prices() or None)
            self.caches.bases[board.user_id] = cached = (key, bases)
        value = sum((b.latest.market_value for b in books if b.latest is not None), ZERO)
        changes = [
            b.latest.day_change
            for b in books
            if b.latest is not None
            and valuation_day(b.latest) == today
            and b.latest.day_change is not None
        ]
        day_change = sum(changes, ZERO) if changes else None
        today_flows = sum((b.flows.get(today, ZERO) for b in books), ZERO)
        returns = live_returns(cached[1], value, today_flows, bench.latest(today), FRACTION)
        return performance_body(
            currency, value, day_change, self.settings.benchmark, returns, list(ids), excluded
        )

    def _allocation(self, currency: str, books: list[PortfolioBook]) -> dict[str, Any]:
        holdings: list[Holding] = []
        unpriced: list[str] = []
        cash = ZERO
        for book in books:
            rows, missing = self.caches.holdings(book)
            holdings += rows
            unpriced += missing
            cash += book.latest.cash if book.latest is not None else ZERO
        return allocation_body(currency, holdings, cash, unpriced, single=len(books) == 1)

    def _movers(
        self, board: UserBoard, books: list[PortfolioBook], firsts: dict[str, First]
    ) -> dict[str, Any]:
        today = board.today
        latest: dict[str, Holding] = {}
        for book in books:
            if book.latest is None or valuation_day(book.latest) != today:
                continue  # not revalued today: none of its symbols moved today
            for holding in self.caches.holdings(book)[0]:
                latest[holding.symbol] = holding
        moves = []
        for symbol, h in latest.items():
            first = firsts.get(symbol)
            if first is None or first[0] < today:
                firsts[symbol] = first = (today, h.price, h.price_text)
            if first[0] == today:
                moves.append(Move(symbol, first[1], h.price, first[2], h.price_text))
        return movers_body(day_date(today).isoformat(), moves, self.settings.movers)
