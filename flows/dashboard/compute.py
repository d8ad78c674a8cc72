"""Compute the dirty cards of one user from the board and shard-wide data.

Which portfolios count: the card currency is the base currency most of the
user's valued portfolios share (ties: alphabetical); portfolios in another
base currency are listed as ``excluded`` and left out of the sums (no FX
guessing). Day change is the sum of the known ``day_change`` of portfolios
valued today (None when none is known).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from flows.dashboard.benchmark import Benchmark
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
from flows.dashboard.targets import effective, portfolio_drift
from flows.portfolio.money import ZERO
from flows.portfolio.valuation_record import ValuationRecord


@dataclass(frozen=True)
class CardSettings:
    benchmark: str = "SPY"
    activity_items: int = 10
    movers: int = 5
    payments: int = 5


class Caches:
    """Derived data only: pickles as empty, so snapshots never carry it."""

    def __init__(self) -> None:
        self.bases: dict[str, tuple[tuple[Any, ...], list[PeriodBase]]] = {}
        self.parsed: dict[str, tuple[int, list[Holding], list[str]]] = {}
        self.openings: dict[str, tuple[int, list[Holding], list[str]]] = {}

    def __reduce__(self) -> tuple[type[Caches], tuple[()]]:
        return (Caches, ())

    def holdings(self, book: PortfolioBook) -> tuple[list[Holding], list[str]]:
        """The positions of the book's latest valuation (and its unpriced)."""
        assert book.latest is not None
        return _parse(self.parsed, book.portfolio_id, book.latest)

    def opening(self, book: PortfolioBook) -> list[Holding]:
        """The positions of the first valuation of the book's latest day."""
        assert book.opening is not None
        return _parse(self.openings, book.portfolio_id, book.opening)[0]


def _parse(
    cache: dict[str, tuple[int, list[Holding], list[str]]], key: str, record: ValuationRecord
) -> tuple[list[Holding], list[str]]:
    cached = cache.get(key)
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
    cache[key] = (record.version, rows, doc["unpriced"])
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


Computed = tuple[int, int, dict[str, Any]]  # (as_of ms, inputs absorbed, body)


class CardMaker:
    def __init__(self, settings: CardSettings, caches: Caches) -> None:
        self.settings = settings
        self.caches = caches
        # Users whose performance was computed before the benchmark's shard
        # reached their valuation time: recomputed when it moves on.
        self.waiting: list[str] = []

    def bodies(self, board: UserBoard, bench: Benchmark) -> dict[str, Computed]:
        """The board's dirty cards (clears the dirty set); see
        ``flows.dashboard.board`` for ``as_of`` and the input counts."""
        if board.today > board.income_day and board.income_day >= 0:
            board.dirty.add(INCOME)
        dirty, board.dirty = board.dirty, set()
        currency, books, excluded = included(board)
        deps = board.deps
        out: dict[str, Computed] = {}
        if books and PERFORMANCE in dirty:
            out[PERFORMANCE] = self._performance(board, currency, books, excluded, bench)
        if books and ALLOCATION in dirty:
            body = self._allocation(board, currency, books)
            out[ALLOCATION] = (board.valuation_ms, deps.valuations + deps.targets, body)
        if books and MOVERS in dirty:
            out[MOVERS] = (board.valuation_ms, deps.valuations, self._movers(board, books))
        if INCOME in dirty:
            board.income_day = max(board.today, 0)
            as_of = board.income_as_of()
            ledgers = [(pid, b.ledger) for pid, b in sorted(board.portfolios.items())]
            out[INCOME] = (as_of, deps.income, income_body(ledgers, as_of, self.settings.payments))
        if ACTIVITY in dirty:
            body = activity_body([r[2] for r in board.transactions], [r[2] for r in board.alerts])
            out[ACTIVITY] = (board.activity_ms, deps.activity, body)
        return out

    def _performance(
        self,
        board: UserBoard,
        currency: str,
        books: list[PortfolioBook],
        excluded: list[str],
        bench: Benchmark,
    ) -> Computed:
        today, now = board.today, board.valuation_ms
        if bench.newest_ts < now:
            self.waiting.append(board.user_id)
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
        returns = live_returns(cached[1], value, today_flows, bench.latest_before(now), FRACTION)
        body = performance_body(
            currency, value, day_change, self.settings.benchmark, returns, list(ids), excluded
        )
        deps = board.deps
        inputs = deps.valuations + deps.flows + bench.count_before(now)
        return max(now, board.flow_ms), inputs, body

    def _allocation(
        self, board: UserBoard, currency: str, books: list[PortfolioBook]
    ) -> dict[str, Any]:
        holdings: list[Holding] = []
        unpriced: list[str] = []
        cash = ZERO
        for book in books:
            rows, missing = self.caches.holdings(book)
            holdings += rows
            unpriced += missing
            cash += book.latest.cash if book.latest is not None else ZERO
        drift = self._drift(board)
        return allocation_body(
            currency, holdings, cash, unpriced, single=len(books) == 1, drift=drift
        )

    def _drift(self, board: UserBoard) -> list[dict[str, Any]] | None:
        """Per valued portfolio with a target (any base currency: a
        portfolio's drift is its own weights against its own target)."""
        out = []
        for portfolio_id, rules in sorted(board.targets.items()):
            book, rule = board.portfolios.get(portfolio_id), effective(rules)
            if book is None or book.latest is None or rule is None:
                continue
            rows = self.caches.holdings(book)[0]
            weights = {h.symbol: Decimal(h.weight_text) for h in rows if h.weight_text}
            out.append(portfolio_drift(portfolio_id, rule, weights))
        return out or None

    def _movers(self, board: UserBoard, books: list[PortfolioBook]) -> dict[str, Any]:
        """Each symbol's latest price against its price in the earliest
        first-of-the-day valuation that holds it (ties: portfolio id), so
        the reference price depends on event time only."""
        today = board.today
        latest: dict[str, tuple[int, Holding]] = {}
        firsts: dict[str, tuple[int, Holding]] = {}
        for book in books:
            if book.latest is None or valuation_day(book.latest) != today:
                continue  # not revalued today: none of its symbols moved today
            end = book.latest.window_end_ms
            for h in self.caches.holdings(book)[0]:
                if h.symbol not in latest or end > latest[h.symbol][0]:
                    latest[h.symbol] = (end, h)
            start = book.opening.window_end_ms if book.opening is not None else end
            for h in self.caches.opening(book):
                if h.symbol not in firsts or start < firsts[h.symbol][0]:
                    firsts[h.symbol] = (start, h)
        moves = []
        for symbol, (_, h) in latest.items():
            known = firsts.get(symbol)
            if known is not None:  # bought since the day's first valuation: no reference
                first = known[1]
                moves.append(Move(symbol, first.price, h.price, first.price_text, h.price_text))
        return movers_body(day_date(today).isoformat(), moves, self.settings.movers)
