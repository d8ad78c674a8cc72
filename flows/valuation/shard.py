"""Per portfolio shard: ledgers, the holders index, the latest prices, and
valuation once per window.

Event-time contract: the valuation for the window ending at W uses exactly
the transactions with ``executed_at < W`` and, per symbol, the last price
with ``ts < W``; it is produced once the watermark (the slowest price
shard's) passes W. Transactions wait in an ordered buffer until then, so
arrival order within the lateness bound does not change the result.

Cost per window: the symbols that changed, plus the positions of the
portfolios that hold them or had transactions — never all portfolios.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from flows.portfolio.buffer import OrderedTransactionBuffer
from flows.portfolio.fast_valuation import Valuer
from flows.portfolio.holders import HoldersIndex
from flows.portfolio.ledger import PortfolioState
from flows.portfolio.money import DAY_MS
from flows.portfolio.records import ApplyResult, ApplyStatus
from flows.portfolio.valuation_record import ValuationRecord
from flows.valuation.coalesce import ClosedWindows, PriceChange
from flows.valuation.transactions import SourcedTransaction
from schemas.transactions import Transaction

_NEVER = -(2**62)
# Symbols whose new price in each window is reported in
# ``ShardOutput.benchmarks`` (the dashboard's benchmark closes; the pipeline
# sets them from its configuration); a handful, so the check is one set
# intersection per window.
DEFAULT_BENCHMARKS = frozenset({"SPY"})


@dataclass
class DayMark:
    day: int
    previous_close: Decimal | None
    last_total: Decimal


class PositionRow(NamedTuple):
    """A position as of one ledger step; ``version`` is the portfolio's
    ledger sequence number, so a replayed or older write never wins."""

    portfolio_id: str
    symbol: str
    quantity: Decimal
    cost_basis: Decimal
    realized_pnl: Decimal
    dividends: Decimal
    fees: Decimal
    currency: str
    version: int


class AppliedTransaction(NamedTuple):
    txn: Transaction
    position: PositionRow | None


@dataclass
class ShardOutput:
    live: list[ValuationRecord] = field(default_factory=list)
    history: list[ValuationRecord] = field(default_factory=list)
    applied: list[AppliedTransaction] = field(default_factory=list)
    rejected: list[tuple[Transaction, ApplyResult, tuple[str, int, int]]] = field(
        default_factory=list
    )
    late_transactions: int = 0
    # (symbol, ts_ms, price) of each benchmark symbol's price taken, per window.
    benchmarks: list[tuple[str, int, Decimal]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.live or self.history or self.applied or self.rejected or self.benchmarks)


@dataclass
class PortfolioShard:
    window_ms: int
    history_ms: int
    states: dict[str, PortfolioState] = field(default_factory=dict)
    holders: HoldersIndex = field(default_factory=HoldersIndex)
    prices: dict[str, Decimal] = field(default_factory=dict)
    price_ts: dict[str, int] = field(default_factory=dict)
    buffer: OrderedTransactionBuffer = field(default_factory=lambda: OrderedTransactionBuffer(0))
    late: list[Transaction] = field(default_factory=list)
    shard_watermarks: dict[str, int] = field(default_factory=dict)
    empty_price_shards: set[str] = field(default_factory=set)
    pending: dict[int, dict[str, PriceChange]] = field(default_factory=dict)
    processed_until: int = _NEVER
    days: dict[str, DayMark] = field(default_factory=dict)
    history_dirty: set[str] = field(default_factory=set)
    sources: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # until decided
    benchmark_symbols: frozenset[str] = DEFAULT_BENCHMARKS
    # Caches only: pickles (and deep-copies) as an empty Valuer.
    valuer: Valuer = field(default_factory=Valuer, compare=False, repr=False)
    # Ledgers changed since the last snapshot (see flows.valuation.snapshot).
    dirty: set[str] = field(default_factory=set, compare=False, repr=False)

    # -- input ----------------------------------------------------------------
    def add_transactions(self, txns: list[SourcedTransaction]) -> None:
        for txn, topic, partition, offset in txns:
            self.sources.setdefault(txn.txn_id, (topic, partition, offset))
            if not self.buffer.push(txn):
                self.late.append(txn)  # behind windows already valued: apply next

    def add_prices(self, closed: ClosedWindows) -> None:
        if closed.watermark_ms is None:  # that price shard has no ticks (yet)
            self.empty_price_shards.add(closed.shard)
            return
        previous = self.shard_watermarks.get(closed.shard, _NEVER)
        self.shard_watermarks[closed.shard] = max(previous, closed.watermark_ms)
        for end, changes in closed.windows:
            merged = self.pending.setdefault(max(end, self.processed_until + self.window_ms), {})
            for symbol, change in changes.items():
                current = merged.get(symbol)
                if current is None or change.ts_ms >= current.ts_ms:
                    merged[symbol] = change

    def watermark(self) -> int | None:
        return min(self.shard_watermarks.values()) if self.shard_watermarks else None

    def heard_from(self, price_shards: tuple[str, ...]) -> bool:
        """Every price shard reported a watermark or that it has no ticks:
        before that, the watermark would ignore a shard that is merely
        slower to fetch, and its prices would miss their windows."""
        marks, empty = self.shard_watermarks, self.empty_price_shards
        return all(s in marks or s in empty for s in price_shards)

    # -- processing -----------------------------------------------------------
    def advance(self, watermark_ms: int | None = None) -> ShardOutput:
        """Value every window that ended at or before the watermark."""
        mark = self.watermark() if watermark_ms is None else watermark_ms
        out = ShardOutput()
        if mark is None:
            return out
        while True:
            end = self._next_window()
            if end is None or end > mark:
                break
            self._process(end, out)
        return out

    def _window_end(self, ms: int) -> int:
        return ms - ms % self.window_ms + self.window_ms

    def _next_window(self) -> int | None:
        candidates = []
        if self.pending:
            candidates.append(min(self.pending))
        due = self.buffer.next_due_ms()
        if due is not None:
            candidates.append(self._window_end(due))
        if self.late:
            candidates.append(self.processed_until + self.window_ms)
        if self.history_dirty:
            candidates.append(self._next_history_boundary())
        return min(candidates) if candidates else None

    def _next_history_boundary(self) -> int:
        # The first boundary after the last processed window (a boundary that
        # was processed itself already emitted and cleared the dirty set).
        last = self.processed_until
        return last - last % self.history_ms + self.history_ms

    def _process(self, end: int, out: ShardOutput) -> None:
        touched: set[str] = set()
        txns = self.late + self.buffer.release(end)
        out.late_transactions += len(self.late)
        self.late = []
        for txn in txns:
            touched.add(self._apply(txn, out))
        changed = self._take_prices(end)
        for symbol in self.benchmark_symbols.intersection(changed):
            out.benchmarks.append((symbol, self.price_ts[symbol], self.prices[symbol]))
        touched |= self.holders.affected(changed)
        live: dict[str, ValuationRecord] = {}
        for pid in sorted(touched):
            valuation = self._value(pid, end - self.window_ms, end)
            if valuation is not None:
                out.live.append(valuation)
                live[pid] = valuation
                self.history_dirty.add(pid)
        self.processed_until = max(self.processed_until, end)
        if end % self.history_ms == 0 and self.history_dirty:
            self._emit_history(end, out, live)

    def _apply(self, txn: Transaction, out: ShardOutput) -> str:
        state = self.states.get(txn.portfolio_id)
        if state is None:
            state = self.states[txn.portfolio_id] = PortfolioState(txn.portfolio_id)
        result = state.apply(txn)
        self.dirty.add(txn.portfolio_id)
        self.holders.record(state, result)
        source = self.sources.pop(txn.txn_id, ("", -1, -1))
        if result.applied:
            out.applied.append(AppliedTransaction(txn, position_row(state, result.symbol)))
        elif result.status is ApplyStatus.REJECTED:
            out.rejected.append((txn, result, source))
        return txn.portfolio_id

    def _take_prices(self, end: int) -> list[str]:
        changed = []
        for symbol, change in self.pending.pop(end, {}).items():
            if change.ts_ms >= self.price_ts.get(symbol, _NEVER):
                self.prices[symbol] = change.price
                self.price_ts[symbol] = change.ts_ms
                changed.append(symbol)
        return changed

    def _value(self, pid: str, start: int, end: int) -> ValuationRecord | None:
        state = self.states.get(pid)
        if state is None or not state.user_id:
            return None
        day = (end - 1) // DAY_MS
        mark = self.days.get(pid)
        previous_close = None
        if mark is not None:
            if day > mark.day:
                mark.previous_close, mark.day = mark.last_total, day
            previous_close = mark.previous_close
        valuation = self.valuer.value(state, self.prices, start, end, previous_close)
        if mark is None:
            self.days[pid] = DayMark(day, None, valuation.market_value)
        else:
            mark.last_total = valuation.market_value
        return valuation

    def _emit_history(self, end: int, out: ShardOutput, live: dict[str, ValuationRecord]) -> None:
        """A portfolio valued live at this same end has the same state,
        prices and day marks now: its live record, re-windowed, is the
        history one (valuing it again doubled the work of every minute's
        last window)."""
        for pid in sorted(self.history_dirty):
            same = live.get(pid)
            if same is not None:
                out.history.append(self.valuer.rewindow(same, end - self.history_ms))
                continue
            valuation = self._value(pid, end - self.history_ms, end)
            if valuation is not None:
                out.history.append(valuation)
        self.history_dirty.clear()


def position_row(state: PortfolioState, symbol: str | None) -> PositionRow | None:
    """The Postgres row of ``symbol``'s position after a transaction (None: no symbol)."""
    if symbol is None:
        return None
    p = state.positions[symbol]
    return PositionRow(
        state.portfolio_id,
        symbol,
        p.quantity,
        p.cost_basis,
        p.realized_pnl,
        p.dividends,
        p.fees,
        p.currency,
        state.seq,
    )
