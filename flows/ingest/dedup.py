"""Step 2: drop repeats of the same tick within a bounded event-time horizon.

A tick is a repeat when the same provider sent the same symbol at the same
timestamp, or when its ``tick_id`` was seen. Memory is bounded: keys older
than ``horizon_ms`` behind the newest timestamp seen are forgotten (a tick
that old is beyond any candle's allowed lateness anyway).

Snapshots cost O(batches), not O(keys): the seen set is not part of them
(it is the union of the expiry batches, rebuilt on restore), and each batch
of keys is pickled once in its life, then its bytes are reused by every
later snapshot. Pickling every key at every epoch took seconds per epoch on
a replay-sized state.
"""

from __future__ import annotations

import pickle
from collections import deque
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from flows.ingest.records import SourcedTick


class KeyBatch:
    """The keys one ``filter`` call added; they expire together once the
    newest of them is past the horizon. Immutable."""

    __slots__ = ("_pickled", "keys", "newest_ms")

    def __init__(self, newest_ms: int, keys: tuple[object, ...]) -> None:
        self.newest_ms = newest_ms
        self.keys = keys
        self._pickled: bytes | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        if self._pickled is None:  # once: the keys never change
            self._pickled = pickle.dumps(self.keys, protocol=pickle.HIGHEST_PROTOCOL)
        return (_key_batch, (self.newest_ms, self._pickled))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyBatch):
            return NotImplemented
        return (self.newest_ms, self.keys) == (other.newest_ms, other.keys)

    def __repr__(self) -> str:
        return f"KeyBatch({self.newest_ms}, {len(self.keys)} keys)"


def _key_batch(newest_ms: int, pickled: bytes) -> KeyBatch:
    batch = KeyBatch(newest_ms, pickle.loads(pickled))
    batch._pickled = pickled
    return batch


@dataclass
class Deduplicator:
    horizon_ms: int
    seen: set[object] = field(default_factory=set)
    expiry: deque[KeyBatch] = field(default_factory=deque)
    newest_ms: int = 0

    def filter(self, ticks: list[SourcedTick]) -> tuple[list[SourcedTick], int]:
        """Return the first occurrences and the number of repeats dropped."""
        fresh: list[SourcedTick] = []
        added: list[object] = []
        seen = self.seen
        remember = seen.add
        keep = added.append
        newest = -1
        # A tick behind the horizon (of the newest tick before it, not of its
        # batch's) is passed on unchecked: whether its key is still held
        # depends on how the partition was batched, and the output must not
        # (candles dead-letter it as late).
        oldest_checked = self.newest_ms - self.horizon_ms
        for item in ticks:
            tick = item[0]
            ts = tick.ts_ms
            if ts < oldest_checked:
                fresh.append(item)
                continue
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
                if ts - self.horizon_ms > oldest_checked:
                    oldest_checked = ts - self.horizon_ms
            fresh.append(item)
        if added:
            # Keys expire per batch, when the batch's newest one is past the
            # horizon: never early, and no per-key bookkeeping.
            self.expiry.append(KeyBatch(newest, tuple(added)))
            self.newest_ms = max(self.newest_ms, newest)
        self._expire()
        return fresh, len(ticks) - len(fresh)

    def _expire(self) -> None:
        cutoff = self.newest_ms - self.horizon_ms
        expiry, forget = self.expiry, self.seen.discard
        while expiry and expiry[0].newest_ms < cutoff:
            for key in expiry.popleft().keys:
                forget(key)

    def snapshot(self) -> DedupSnapshot:
        """An immutable view, independent of later batches, in O(batches)."""
        return DedupSnapshot(self.horizon_ms, tuple(self.expiry), self.newest_ms)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Older snapshots pickled the whole Deduplicator, with expiry entries
        # as (ts, key) per key or (ts, keys) per batch; a key is a tick_id or
        # a (provider, symbol, ts) tuple, and keys in a batch are never ints.
        entries = []
        for entry in state.get("expiry", ()):
            if isinstance(entry, KeyBatch):
                entries.append(entry)
            else:
                ts, keys = entry
                entries.append(KeyBatch(ts, keys if _is_key_tuple(keys) else (keys,)))
        state["expiry"] = deque(entries)
        self.__dict__.update(state)


@dataclass(frozen=True)
class DedupSnapshot:
    """What Bytewax stores; it unpickles as a ready ``Deduplicator``."""

    horizon_ms: int
    batches: tuple[KeyBatch, ...]
    newest_ms: int

    def restore(self) -> Deduplicator:
        return _restore(self.horizon_ms, self.batches, self.newest_ms)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self.horizon_ms, self.batches, self.newest_ms))


def _restore(horizon_ms: int, batches: tuple[KeyBatch, ...], newest_ms: int) -> Deduplicator:
    seen = set(chain.from_iterable(batch.keys for batch in batches))
    return Deduplicator(horizon_ms, seen, deque(batches), newest_ms)


def resume(state: Deduplicator | DedupSnapshot | None, horizon_ms: int) -> Deduplicator:
    """The state to run with: restored, or new."""
    if state is None:
        return Deduplicator(horizon_ms)
    return state.restore() if isinstance(state, DedupSnapshot) else state


def _is_key_tuple(keys: object) -> bool:
    return isinstance(keys, tuple) and not (len(keys) == 3 and isinstance(keys[2], int))
