"""Step 2: drop repeats of the same tick within a bounded event-time horizon.

A tick is a repeat when the same provider sent the same symbol at the same
timestamp, or when its ``tick_id`` was seen. Memory is bounded: keys older
than ``horizon_ms`` behind the newest timestamp seen are forgotten (a tick
that old is beyond any candle's allowed lateness anyway).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from flows.ingest.records import SourcedTick


@dataclass
class Deduplicator:
    horizon_ms: int
    seen: set[object] = field(default_factory=set)
    # One entry per ``filter`` call: (newest ts among its keys, its keys).
    expiry: deque[tuple[int, tuple[object, ...]]] = field(default_factory=deque)
    newest_ms: int = 0

    def filter(self, ticks: list[SourcedTick]) -> tuple[list[SourcedTick], int]:
        """Return the first occurrences and the number of repeats dropped."""
        fresh: list[SourcedTick] = []
        added: list[object] = []
        seen = self.seen
        remember = seen.add
        keep = added.append
        newest = -1
        for item in ticks:
            tick = item[0]
            ts = tick.ts_ms
            key = (tick.provider, tick.symbol, ts)
            tick_id = tick.tick_id
            if key in seen or (tick_id is not None and tick_id in seen):
                continue
            remember(key)
            keep(key)
            if tick_id is not None:
                remember(tick_id)
                keep(tick_id)
            if ts > newest:
                newest = ts
            fresh.append(item)
        if added:
            # Keys expire per batch, when the batch's newest one is past the
            # horizon: never early, and no per-key bookkeeping.
            self.expiry.append((newest, tuple(added)))
            self.newest_ms = max(self.newest_ms, newest)
        self._expire()
        return fresh, len(ticks) - len(fresh)

    def _expire(self) -> None:
        cutoff = self.newest_ms - self.horizon_ms
        expiry, forget = self.expiry, self.seen.discard
        while expiry and expiry[0][0] < cutoff:
            for key in expiry.popleft()[1]:
                forget(key)

    def snapshot(self) -> Deduplicator:
        """An independent copy in O(keys) C-level work: keys and expiry
        entries are immutable, so copying the containers is enough (a
        ``deepcopy`` of a replay-sized state took seconds)."""
        return Deduplicator(self.horizon_ms, set(self.seen), deque(self.expiry), self.newest_ms)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Snapshots taken before expiry was kept per batch hold (ts, key),
        # where a key is a tick_id or a (provider, symbol, ts) tuple; keys
        # inside a new entry are never ints, so the two cannot be confused.
        state["expiry"] = deque(
            (ts, keys) if _is_key_tuple(keys) else (ts, (keys,))
            for ts, keys in state.get("expiry", ())
        )
        self.__dict__.update(state)


def _is_key_tuple(keys: object) -> bool:
    return isinstance(keys, tuple) and not (len(keys) == 3 and isinstance(keys[2], int))
