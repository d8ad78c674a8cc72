"""Step 2: drop repeats of the same tick within a bounded event-time horizon.

A tick is a repeat when the same provider sent the same symbol at the same
timestamp, or when its ``tick_id`` was seen. Memory is bounded: keys older
than ``horizon_ms`` behind the newest timestamp seen are forgotten (a tick
that old is beyond any candle's allowed lateness anyway).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from flows.ingest.records import SourcedTick


@dataclass
class Deduplicator:
    horizon_ms: int
    seen: set[object] = field(default_factory=set)
    expiry: deque[tuple[int, object]] = field(default_factory=deque)
    newest_ms: int = 0

    def filter(self, ticks: list[SourcedTick]) -> tuple[list[SourcedTick], int]:
        """Return the first occurrences and the number of repeats dropped."""
        fresh: list[SourcedTick] = []
        repeats = 0
        for item in ticks:
            tick = item.tick
            keys: list[object] = [(tick.provider, tick.symbol, tick.ts_ms)]
            if tick.tick_id is not None:
                keys.append(tick.tick_id)
            if any(key in self.seen for key in keys):
                repeats += 1
                continue
            for key in keys:
                self.seen.add(key)
                self.expiry.append((tick.ts_ms, key))
            self.newest_ms = max(self.newest_ms, tick.ts_ms)
            fresh.append(item)
        self._expire()
        return fresh, repeats

    def snapshot(self) -> Deduplicator:
        """An independent copy in O(keys) C-level work: keys and expiry
        entries are immutable, so copying the containers is enough (a
        ``deepcopy`` of a replay-sized state took seconds)."""
        return Deduplicator(self.horizon_ms, set(self.seen), deque(self.expiry), self.newest_ms)

    def _expire(self) -> None:
        cutoff = self.newest_ms - self.horizon_ms
        # Insertion order is close to time order; an out-of-order old key that
        # sits behind a newer one is kept a little longer, never dropped early.
        while self.expiry and self.expiry[0][0] < cutoff:
            _, key = self.expiry.popleft()
            self.seen.discard(key)
