"""The benchmark's prices as the user shards see them (from one portfolio
shard's outputs, in event-time order)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from flows.portfolio.money import DAY_MS


@dataclass
class Benchmark:
    """Benchmark prices: daily closes (day -> (ts_ms, price) of the last price
    seen with ``ts`` in that day; ``rev`` rises when a past day changes) and
    every accepted price of the newest two days, so that a card valued at
    some instant uses exactly the prices before it, however far the
    benchmark's own shard has run ahead."""

    closes: dict[int, tuple[int, Decimal]] = field(default_factory=dict)
    rev: int = 0
    newest_day: int = -1
    newest_ts: int = -1
    accepted: int = 0  # prices accepted, ever
    recent_ts: list[int] = field(default_factory=list)  # by ts, then arrival
    recent_px: list[Decimal] = field(default_factory=list)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Snapshots of older versions lack the newer fields: defaults, and
        # the newest close for ``newest_ts``.
        self.__dict__.update(vars(Benchmark()) | state)
        if self.newest_ts < 0 and self.closes:
            self.newest_ts = max(ts for ts, _ in self.closes.values())

    def add(self, ts_ms: int, price: Decimal) -> bool:
        """Keep a price unless its day already has a later one; True if kept."""
        day = ts_ms // DAY_MS
        known = self.closes.get(day)
        if known is not None and known[0] > ts_ms:
            return False
        self.closes[day] = (ts_ms, price)
        self.accepted += 1
        self.newest_ts = max(self.newest_ts, ts_ms)
        at = bisect.bisect_right(self.recent_ts, ts_ms)
        self.recent_ts.insert(at, ts_ms)
        self.recent_px.insert(at, price)
        if day < self.newest_day:
            self.rev += 1
        elif day > self.newest_day:
            self.newest_day = day
            for old in [d for d in self.closes if d < day - 400]:
                del self.closes[old]
            cut = bisect.bisect_left(self.recent_ts, (day - 1) * DAY_MS)
            del self.recent_ts[:cut], self.recent_px[:cut]
        return True

    def prices(self) -> dict[int, Decimal]:
        return {day: price for day, (_, price) in self.closes.items()}

    def count_before(self, ms: int) -> int:
        """Prices accepted with ts < ``ms`` (exact while ``ms`` is within the
        two days kept; older instants count everything dropped since)."""
        return self.accepted - (len(self.recent_ts) - bisect.bisect_left(self.recent_ts, ms))

    def latest_before(self, ms: int) -> tuple[int, Decimal] | None:
        """(day, price) of the newest price with ts < ``ms``."""
        at = bisect.bisect_left(self.recent_ts, ms)
        if at > 0:
            return self.recent_ts[at - 1] // DAY_MS, self.recent_px[at - 1]
        days = [d for d, (ts, _) in self.closes.items() if ts < ms]
        return (max(days), self.closes[max(days)][1]) if days else None
