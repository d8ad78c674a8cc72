"""The valuation hot path: ``Valuer.value`` -> ``ValuationRecord``.

Same rules and the same numbers as the reference
``flows.portfolio.valuation.value`` (see its docstring; a property test
checks that the record's JSON parses into exactly the reference model), at
a fraction of the cost: plain ``Decimal`` operators in one local context,
no pydantic, and the JSON assembled from cached pieces. The common case
(every position and balance in the base currency, every position priced)
takes ``flows.portfolio.fast_base`` and writes the document itself; the
rest takes ``flows.portfolio.fast_rows`` (per position) and
``flows.portfolio.fast_balances`` (cash, realized P&L) and orjson.

What is cached, and why it stays correct:

- per portfolio, its open positions sorted by symbol with each one's JSON
  head (symbol, quantity, currency), and for the common case their cost
  basis, cash and realized P&L summed and printed and the document's
  opening (ids, JSON-escaped by orjson); valid while ``state`` is the same
  object at the same ledger ``seq`` and base currency (every applied
  transaction bumps ``seq``; rejected ones change nothing);
- per symbol, the JSON text of its price, valid while the price is the
  same ``Decimal`` object;
- the ISO text of recent window boundaries.

The cache is not state: pickling or copying a ``Valuer`` gives an empty
one, so Bytewax snapshots never carry it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, localcontext
from typing import NamedTuple

import orjson

from flows.portfolio.errors import PortfolioError
from flows.portfolio.fast_balances import Sums, add_balances, unconverted_json
from flows.portfolio.fast_base import (
    BaseBook,
    Steady,
    base_book,
    base_positions,
    steady_parts,
    tidy,
)
from flows.portfolio.fast_rows import Entry, PriceEntry, entry, general_rows, rows_json
from flows.portfolio.ledger import PortfolioState
from flows.portfolio.money import CTX
from flows.portfolio.valuation_record import ValuationRecord, iso_ms
from schemas.valuation import VALUATION_SCHEMA_VERSION

_ISO_CACHE_SIZE = 64


class _Book(NamedTuple):
    state: PortfolioState
    seq: int
    base: str
    entries: tuple[Entry, ...]
    fast: BaseBook | None  # every position in the base currency
    steady: Steady | None  # and every balance too


_new_record = tuple.__new__  # ValuationRecord(...) without NamedTuple's Python-level __new__


class Valuer:
    """Values portfolios; one per shard (its caches are per process)."""

    __slots__ = ("_books", "_iso", "_prices")

    def __init__(self) -> None:
        self._books: dict[str, _Book] = {}
        self._prices: dict[str, PriceEntry] = {}
        self._iso: dict[int, str] = {}

    def __reduce__(self) -> tuple[type[Valuer], tuple[()]]:
        return (Valuer, ())

    def value(
        self,
        state: PortfolioState,
        prices: Mapping[str, Decimal],
        window_start_ms: int,
        window_end_ms: int,
        previous_close: Decimal | None = None,
    ) -> ValuationRecord:
        """The valuation of ``state`` at the close of [window_start, window_end).

        ``previous_close`` is the previous day's closing ``market_value``;
        ``day_change`` is None without it.
        """
        if not state.user_id:
            raise PortfolioError(f"portfolio {state.portfolio_id} has no user yet (no transaction)")
        with localcontext(CTX):
            book = self._book(state)
            steady = book.steady
            if steady is not None:
                assert book.fast is not None
                found = base_positions(book.fast, prices, self._prices)
                if found is not None:
                    return self._fast_record(
                        book, steady, *found, window_start_ms, window_end_ms, previous_close
                    )
        return self._general_record(
            state, book, prices, window_start_ms, window_end_ms, previous_close
        )

    def _fast_record(
        self,
        book: _Book,
        steady: Steady,
        positions: str,
        holdings: Decimal,
        window_start_ms: int,
        window_end_ms: int,
        previous_close: Decimal | None,
    ) -> ValuationRecord:
        """The document written directly: what ``orjson.dumps`` makes of
        ``_general_record``'s dict when nothing is unpriced or unconverted
        (a test checks the bytes); the numbers are digits, points and minus
        signs, the ids come JSON-escaped in ``steady.opening``. The caller
        holds the 60-digit context."""
        assert book.fast is not None
        total = holdings + steady.cash_amount
        market_value, market_text = tidy(total)
        holdings_value, holdings_text = tidy(holdings)
        unrealized, unrealized_text = tidy(holdings - book.fast.cost)
        change = None if previous_close is None else tidy(total - previous_close)
        day_change = "null" if change is None else f'"{change[1]}"'
        text = (
            f'{steady.opening}"window_start":"{self._iso_text(window_start_ms)}",'
            f'"window_end":"{self._iso_text(window_end_ms)}","market_value":"{market_text}",'
            f'"holdings_value":"{holdings_text}","cash":"{steady.cash[1]}",'
            f'"cost_basis":"{steady.cost[1]}","unrealized_pnl":"{unrealized_text}",'
            f'"realized_pnl":"{steady.realized[1]}","day_change":{day_change},'
            f'"positions":{positions},"unpriced":[],"unconverted":{{}},'
            f'"version":{window_end_ms},"schema_version":{VALUATION_SCHEMA_VERSION}}}'
        )
        state = book.state
        return _new_record(
            ValuationRecord,
            (
                state.portfolio_id,
                state.user_id,
                state.base_currency,
                window_start_ms,
                window_end_ms,
                market_value,
                holdings_value,
                steady.cash[0],
                steady.cost[0],
                unrealized,
                steady.realized[0],
                None if change is None else change[0],
                window_end_ms,
                text.encode(),
            ),
        )

    def _general_record(
        self,
        state: PortfolioState,
        book: _Book,
        prices: Mapping[str, Decimal],
        window_start_ms: int,
        window_end_ms: int,
        previous_close: Decimal | None,
    ) -> ValuationRecord:
        """Any portfolio: positions in any currency, unpriced ones, rates."""
        sums = Sums()
        with localcontext(CTX):
            found = None if book.fast is None else base_positions(book.fast, prices, self._prices)
            if found is None:
                rows, unpriced = general_rows(
                    book.entries, prices, self._prices, state.base_currency, sums
                )
                positions = rows_json(rows, sums.holdings)
            else:
                assert book.fast is not None
                positions, sums.holdings = found
                sums.cost, unpriced = book.fast.cost, []
                sums.unrealized = sums.holdings - sums.cost
            add_balances(state, prices, sums)
            total = sums.holdings + sums.cash
            amounts = (total, sums.holdings, sums.cash, sums.cost, sums.unrealized)
            tidied = [tidy(x) for x in (*amounts, sums.realized)]
            change = None if previous_close is None else tidy(total - previous_close)
        # The record's numbers are the texts' values, digit for digit (as the
        # model would hold them after parsing the document).
        texts = [text for _, text in tidied]
        doc = {
            "portfolio_id": state.portfolio_id,
            "user_id": state.user_id,
            "base_currency": state.base_currency,
            "window_start": self._iso_text(window_start_ms),
            "window_end": self._iso_text(window_end_ms),
            "market_value": texts[0],
            "holdings_value": texts[1],
            "cash": texts[2],
            "cost_basis": texts[3],
            "unrealized_pnl": texts[4],
            "realized_pnl": texts[5],
            "day_change": None if change is None else change[1],
            "positions": orjson.Fragment(positions),
            "unpriced": unpriced,
            "unconverted": unconverted_json(sums.unconverted),
            "version": window_end_ms,
            "schema_version": VALUATION_SCHEMA_VERSION,
        }
        market_value, holdings, cash, cost, unrealized, realized = (x for x, _ in tidied)
        return _new_record(
            ValuationRecord,
            (
                state.portfolio_id,
                state.user_id,
                state.base_currency,
                window_start_ms,
                window_end_ms,
                market_value,
                holdings,
                cash,
                cost,
                unrealized,
                realized,
                None if change is None else change[0],
                window_end_ms,
                # orjson's result keeps its whole initial buffer (32 KiB for a
                # 3 KB document); a copy holds only the bytes, for 0.5 us.
                bytes(memoryview(orjson.dumps(doc))),
            ),
        )

    def rewindow(self, record: ValuationRecord, window_start_ms: int) -> ValuationRecord:
        """``record`` for a window that starts at ``window_start_ms`` and
        ends where ``record``'s does: what ``value`` returns for the same
        state, prices and previous close, without valuing again (a history
        window ends where a live one does). ``"window_start":"`` is found
        first: the three strings before it are JSON-escaped, so none can
        contain it with its quotes unescaped."""
        old = b'"window_start":"' + self._iso_text(record.window_start_ms).encode()
        new = b'"window_start":"' + self._iso_text(window_start_ms).encode()
        assert old in record.json, "not a record of this valuer's format"
        return record._replace(
            window_start_ms=window_start_ms, json=record.json.replace(old, new, 1)
        )

    def _book(self, state: PortfolioState) -> _Book:
        """The cached book of ``state`` (the caller holds the 60-digit context)."""
        book = self._books.get(state.portfolio_id)
        if (
            book is not None
            and book.state is state
            and book.seq == state.seq
            and book.base == state.base_currency
        ):
            return book
        entries = tuple(entry(state.positions[symbol]) for symbol in sorted(state.open_symbols))
        base = state.base_currency
        fast = base_book(entries, base)
        steady = None if fast is None else steady_parts(state, fast)
        book = _Book(state, state.seq, base, entries, fast, steady)
        self._books[state.portfolio_id] = book
        return book

    def _iso_text(self, ms: int) -> str:
        text = self._iso.get(ms)
        if text is None:
            if len(self._iso) >= _ISO_CACHE_SIZE:
                self._iso.clear()
            text = self._iso[ms] = iso_ms(ms)
        return text
