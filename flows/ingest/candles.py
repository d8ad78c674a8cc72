"""Step 4: OHLCV candles by event time over tumbling windows.

The watermark of a shard is ``newest event time seen - allowed lateness``,
and it also advances with system time while a live shard is quiet (as
Bytewax's ``EventClock`` does; never while it replays a backlog, see
``flows.ingest.quiet``), so windows close on time even for symbols — or
whole partitions — that stop ticking. A window closes once the watermark
passes its end, checked after every tick (so which ticks are late depends
on the order of the partition only, not on how it was split into batches);
a tick for a closed window is *late*: it is returned to the caller (for the
dead-letter topic), never silently dropped.

Open/close are the prices with the smallest/largest event time (ties: first
arrival), so out-of-order ticks within the lateness still produce the right
candle. Closing is driven by a sorted heap of window ends, so a batch costs
O(ticks + closed windows), not O(open windows) — which keeps replays of
old timestamps fast (the failure mode of a clock that wakes every key).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from decimal import Decimal

from flows.ingest.quiet import is_live, quiet_ms
from flows.ingest.records import CandleRow, SourcedTick
from schemas.fast import TickRow

# [open_ts, open, high, low, close_ts, close, volume, trades, currency]
_Acc = list
_ZERO = Decimal(0)


@dataclass
class CandleBuilder:
    window_ms: int
    lateness_ms: int
    open_windows: dict[tuple[str, int], _Acc] = field(default_factory=dict)
    ends: list[int] = field(default_factory=list)  # heap of distinct open window ends
    symbols_by_end: dict[int, list[str]] = field(default_factory=dict)
    newest_ms: int | None = None
    newest_at_sys_ms: int = 0
    closed_until_ms: int = 0  # every window ending at or before this is closed

    def snapshot(self) -> CandleBuilder:
        """An independent copy: accumulators and symbol lists are copied,
        their contents (Decimals, strings, ints) are immutable."""
        return CandleBuilder(
            self.window_ms,
            self.lateness_ms,
            {key: acc.copy() for key, acc in self.open_windows.items()},
            self.ends.copy(),
            {end: symbols.copy() for end, symbols in self.symbols_by_end.items()},
            self.newest_ms,
            self.newest_at_sys_ms,
            self.closed_until_ms,
        )

    def watermark(self, now_sys_ms: int) -> int | None:
        if self.newest_ms is None:
            return None
        idle = quiet_ms(self.newest_ms, self.newest_at_sys_ms, now_sys_ms)
        return self.newest_ms - self.lateness_ms + idle

    def add(
        self, prices: list[SourcedTick], now_sys_ms: int
    ) -> tuple[list[CandleRow], list[tuple[SourcedTick, int]]]:
        """Fold consolidated prices in; return (closed candles, late prices
        each with ``closed_until_ms`` when it arrived: a function of the
        partition's order, unlike the value after the whole batch).

        Runs once per tick: folding into an open window is inlined."""
        late: list[tuple[SourcedTick, int]] = []
        closed: list[CandleRow] = []
        window_ms = self.window_ms
        open_windows = self.open_windows
        for item in prices:
            row = item[0]
            ts_ms = row.ts_ms
            start = ts_ms - ts_ms % window_ms
            if start + window_ms <= self.closed_until_ms:
                late.append((item, self.closed_until_ms))
                continue
            acc = open_windows.get((row.symbol, start))
            if acc is None:
                self._open(row, start)
            else:
                price = row.price
                if ts_ms < acc[0]:
                    acc[0], acc[1] = ts_ms, price
                if price > acc[2]:
                    acc[2] = price
                elif price < acc[3]:
                    acc[3] = price
                if ts_ms >= acc[4]:
                    acc[4], acc[5] = ts_ms, price
                volume = row.volume
                acc[6] += _ZERO if volume is None else volume
                acc[7] += 1
            newest = self.newest_ms
            if newest is None or ts_ms > newest:
                self.newest_ms = ts_ms
                self.newest_at_sys_ms = now_sys_ms
                mark = ts_ms - self.lateness_ms
                if mark > self.closed_until_ms:
                    if self.ends and self.ends[0] <= mark:
                        closed += self._close_until(mark)
                    else:
                        self.closed_until_ms = mark
        return closed + self.close_due(now_sys_ms), late

    def _open(self, row: TickRow, start: int) -> None:
        """The first tick of a window for its symbol."""
        volume = row.volume if row.volume is not None else _ZERO
        price = row.price
        self.open_windows[(row.symbol, start)] = [
            row.ts_ms,
            price,
            price,
            price,
            row.ts_ms,
            price,
            volume,
            1,
            row.currency,
        ]
        end = start + self.window_ms
        waiting = self.symbols_by_end.get(end)
        if waiting is None:
            self.symbols_by_end[end] = waiting = []
            heapq.heappush(self.ends, end)
        waiting.append(row.symbol)

    def close_due(self, now_sys_ms: int) -> list[CandleRow]:
        watermark = self.watermark(now_sys_ms)
        if watermark is None:
            return []
        return self._close_until(watermark)

    def close_all(self) -> list[CandleRow]:
        """End of input (``--exit-at-end``): every open window is final."""
        return self._close_until(max(self.ends, default=0))

    def _close_until(self, watermark: int) -> list[CandleRow]:
        if watermark <= self.closed_until_ms:
            return []
        self.closed_until_ms = watermark
        closed = []
        while self.ends and self.ends[0] <= watermark:
            end = heapq.heappop(self.ends)
            start = end - self.window_ms
            for symbol in sorted(self.symbols_by_end.pop(end)):
                acc = self.open_windows.pop((symbol, start))
                o, h, lo, c, v, n, cur = acc[1], acc[2], acc[3], acc[5], acc[6], acc[7], acc[8]
                closed.append(CandleRow(symbol, start, end, o, h, lo, c, v, n, cur, end))
        return closed

    def next_close_sys_ms(self) -> int | None:
        """System time at which the earliest open window closes if nothing
        arrives; None if nothing is open or the shard replays a backlog."""
        if not self.ends or self.newest_ms is None:
            return None
        if not is_live(self.newest_ms, self.newest_at_sys_ms):
            return None
        return self.newest_at_sys_ms + (self.ends[0] - (self.newest_ms - self.lateness_ms))
