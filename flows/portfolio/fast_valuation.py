"""The valuation hot path: ``Valuer.value`` -> ``ValuationRecord``.

Same rules and the same numbers as the reference
``flows.portfolio.valuation.value`` (see its docstring; a property test
checks that the record's JSON parses into exactly the reference model), at
a fraction of the cost: plain ``Decimal`` operators in one local context,
no pydantic, and the JSON assembled from cached pieces with orjson. The
per-position work is in ``flows.portfolio.fast_rows``, cash and realized
P&L in ``flows.portfolio.fast_balances``.

What is cached, and why it stays correct:

- per portfolio, its open positions sorted by symbol with each one's JSON
  head (symbol, quantity, currency), valid while ``state`` is the same
  object at the same ledger ``seq`` (every applied transaction bumps it;
  rejected ones change nothing);
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
from flows.portfolio.fast_rows import Entry, PriceEntry, entry, general_rows, rows_json
from flows.portfolio.ledger import PortfolioState
from flows.portfolio.money import CTX
from flows.portfolio.valuation_record import ValuationRecord, decimal_text, iso_ms
from schemas.valuation import VALUATION_SCHEMA_VERSION

_ISO_CACHE_SIZE = 64


class _Book(NamedTuple):
    state: PortfolioState
    seq: int
    entries: tuple[Entry, ...]


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
        sums = Sums()
        with localcontext(CTX):
            entries = self._entries(state)
            rows, unpriced = general_rows(entries, prices, self._prices, state.base_currency, sums)
            add_balances(state, prices, sums)
            positions = rows_json(rows, sums.holdings)
            total = sums.holdings + sums.cash
            day_change = None if previous_close is None else total - previous_close
        totals = [
            decimal_text(x)
            for x in (total, sums.holdings, sums.cash, sums.cost, sums.unrealized, sums.realized)
        ]
        change = None if day_change is None else decimal_text(day_change)
        doc = {
            "portfolio_id": state.portfolio_id,
            "user_id": state.user_id,
            "base_currency": state.base_currency,
            "window_start": self._iso_text(window_start_ms),
            "window_end": self._iso_text(window_end_ms),
            "market_value": totals[0],
            "holdings_value": totals[1],
            "cash": totals[2],
            "cost_basis": totals[3],
            "unrealized_pnl": totals[4],
            "realized_pnl": totals[5],
            "day_change": change,
            "positions": orjson.Fragment(positions),
            "unpriced": unpriced,
            "unconverted": unconverted_json(sums.unconverted),
            "version": window_end_ms,
            "schema_version": VALUATION_SCHEMA_VERSION,
        }
        # The record's numbers are parsed back from the texts, so they are
        # the contract's values digit for digit (as the model would hold them).
        market_value, holdings, cash, cost, unrealized, realized = map(Decimal, totals)
        return ValuationRecord(
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
            None if change is None else Decimal(change),
            window_end_ms,
            # orjson's result keeps its whole initial buffer (32 KiB for a
            # 3 KB document); a copy holds only the bytes, for 0.5 us.
            bytes(memoryview(orjson.dumps(doc))),
        )

    def _entries(self, state: PortfolioState) -> tuple[Entry, ...]:
        book = self._books.get(state.portfolio_id)
        if book is not None and book.state is state and book.seq == state.seq:
            return book.entries
        entries = tuple(entry(state.positions[symbol]) for symbol in sorted(state.open_symbols))
        self._books[state.portfolio_id] = _Book(state, state.seq, entries)
        return entries

    def _iso_text(self, ms: int) -> str:
        text = self._iso.get(ms)
        if text is None:
            if len(self._iso) >= _ISO_CACHE_SIZE:
                self._iso.clear()
            text = self._iso[ms] = iso_ms(ms)
        return text
