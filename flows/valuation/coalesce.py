"""Per price shard: the last consolidated price of each symbol per valuation
window, released once the shard's watermark passes the window's end.

A valuation for the window ending at W uses, per symbol, the last price with
``ts < W``; so a price at ``ts`` belongs to the window ending at
``ts - ts % window + window``. Downstream gets one item per activation:
the windows just closed (only those with changes) and the new watermark, so
the cost per window grows with the symbols that moved, not with ticks, and
quiet periods cost nothing.

Windows are released as soon as a tick moves the watermark past them, so
which ticks miss their window (``late``) depends on the order of the
partition only, never on how it was split into batches; system time moves
the watermark only while the shard is live (``flows.ingest.quiet``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from flows.ingest.quiet import is_live, quiet_ms
from flows.ingest.records import SourcedTick


class PriceChange(NamedTuple):
    price: Decimal
    ts_ms: int
    currency: str


class ClosedWindows(NamedTuple):
    """From one price shard: windows closed up to ``watermark_ms``; a
    ``None`` watermark (no windows) says the shard read its partition to
    the end and has seen no tick yet."""

    shard: str
    watermark_ms: int | None
    windows: list[tuple[int, dict[str, PriceChange]]]  # (window end, changes), ascending


@dataclass
class PriceCoalescer:
    shard: str
    window_ms: int
    lateness_ms: int
    pending: dict[int, dict[str, PriceChange]] = field(default_factory=dict)
    newest_ms: int | None = None
    newest_at_sys_ms: int = 0
    closed_until_ms: int = 0
    late: int = 0

    def window_end(self, ts_ms: int) -> int:
        return ts_ms - ts_ms % self.window_ms + self.window_ms

    def watermark(self, now_sys_ms: int) -> int | None:
        if self.newest_ms is None:
            return None
        idle = quiet_ms(self.newest_ms, self.newest_at_sys_ms, now_sys_ms)
        return self.newest_ms - self.lateness_ms + idle

    def add(self, ticks: list[SourcedTick], now_sys_ms: int) -> ClosedWindows | None:
        if not ticks and self.newest_ms is None:
            return ClosedWindows(self.shard, None, [])  # an end marker of an empty shard
        before = self.closed_until_ms
        released: list[tuple[int, dict[str, PriceChange]]] = []
        for item in ticks:
            t = item.tick
            end = self.window_end(t.ts_ms)
            if end <= self.closed_until_ms:
                # Its window was released already; the next window carries it
                # (it is still the latest price seen for later windows).
                self.late += 1
                end = self.window_end(self.closed_until_ms)
            changes = self.pending.get(end)
            if changes is None:
                changes = self.pending[end] = {}
            current = changes.get(t.symbol)
            if current is None or t.ts_ms >= current.ts_ms:
                changes[t.symbol] = PriceChange(t.price, t.ts_ms, t.currency)
            if self.newest_ms is None or t.ts_ms > self.newest_ms:
                self.newest_ms = t.ts_ms
                self.newest_at_sys_ms = now_sys_ms
                mark = t.ts_ms - self.lateness_ms
                if mark - mark % self.window_ms > self.closed_until_ms:
                    closed = self._release_until(mark - mark % self.window_ms)
                    released += closed.windows if closed is not None else []
        last = self.release(now_sys_ms)
        if last is not None:
            released += last.windows
        if self.closed_until_ms <= before:
            return None
        return ClosedWindows(self.shard, self.closed_until_ms, released)

    def release(self, now_sys_ms: int) -> ClosedWindows | None:
        watermark = self.watermark(now_sys_ms)
        if watermark is None:
            return None
        return self._release_until(watermark - watermark % self.window_ms)

    def release_all(self) -> ClosedWindows | None:
        if not self.pending:
            return None
        return self._release_until(max(self.pending))

    def _release_until(self, boundary: int) -> ClosedWindows | None:
        if boundary <= self.closed_until_ms:
            return None
        self.closed_until_ms = boundary
        due = sorted(end for end in self.pending if end <= boundary)
        windows = [(end, self.pending.pop(end)) for end in due]
        return ClosedWindows(self.shard, boundary, windows)

    def next_release_sys_ms(self) -> int | None:
        """When system time alone releases the next window; None if the
        shard has seen nothing or replays a backlog."""
        if self.newest_ms is None or not is_live(self.newest_ms, self.newest_at_sys_ms):
            return None
        next_boundary = self.closed_until_ms + self.window_ms
        if self.pending:
            next_boundary = max(next_boundary, min(self.pending))
        return self.newest_at_sys_ms + (next_boundary - (self.newest_ms - self.lateness_ms))
