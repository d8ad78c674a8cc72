"""Step 2: drop repeats of the same tick within a bounded event-time horizon.

A tick is a repeat when the same provider sent the same symbol at the same
timestamp, or when its ``tick_id`` was first seen on a tick within the
horizon. Memory is bounded: keys older than ``horizon_ms`` behind the newest
timestamp seen are forgotten. A tick behind the horizon (of the newest tick
before it) cannot be checked, so it is returned as *stale* for the dead-letter
topic (reason ``late``: the horizon is at least a candle plus its allowed
lateness, so no candle could take it). Every decision depends only on the
ticks before it in the partition, never on how they were batched: a replay
after a crash gives the same output.

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
    """``seen`` holds (provider, symbol, ts) keys; ``ids`` each tick_id with
    the timestamp of its first tick (an id counts only while that tick is
    within the horizon, so the answer never depends on expiry timing)."""

    horizon_ms: int
    seen: set[object] = field(default_factory=set)
    expiry: deque[KeyBatch] = field(default_factory=deque)
    newest_ms: int = 0
    ids: dict[str, int] = field(default_factory=dict)

    def filter(self, ticks: list[SourcedTick]) -> tuple[list[SourcedTick], int, list[SourcedTick]]:
        """Return (first occurrences, repeats dropped, stale ticks)."""
        fresh: list[SourcedTick] = []
        stale: list[SourcedTick] = []
        added: list[object] = []
        seen, ids = self.seen, self.ids
        remember = seen.add
        keep = added.append
        newest = -1
        # The horizon of the newest tick before each one, not of its batch.
        oldest_checked = self.newest_ms - self.horizon_ms
        for item in ticks:
            tick = item[0]
            ts = tick.ts_ms
            if ts < oldest_checked:
                stale.append(item)
                continue
            key = (tick.provider, tick.symbol, ts)
            if key in seen:
                continue
            tick_id = tick.tick_id
            if tick_id is not None:
                first_ts = ids.get(tick_id)
                if first_ts is not None and first_ts >= oldest_checked:
                    continue
                ids[tick_id] = ts
                keep((tick_id, ts))
            remember(key)
            keep(key)
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
        return fresh, len(ticks) - len(fresh) - len(stale), stale

    def _expire(self) -> None:
        cutoff = self.newest_ms - self.horizon_ms
        expiry, forget, ids = self.expiry, self.seen.discard, self.ids
        while expiry and expiry[0].newest_ms < cutoff:
            batch = expiry.popleft()
            for key in batch.keys:
                tick_id, first_ts = _id_entry(key, batch.newest_ms)
                if tick_id is None:
                    forget(key)
                elif ids.get(tick_id) == first_ts:  # not taken again by a later tick
                    del ids[tick_id]

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
        state.setdefault("ids", {})
        self.__dict__.update(state)
        _split_ids(self)


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
    return _split_ids(Deduplicator(horizon_ms, seen, deque(batches), newest_ms))


def _split_ids(dedup: Deduplicator) -> Deduplicator:
    """Move tick ids out of ``seen`` into ``ids``: (id, first ts) pairs, or a
    bare id from a snapshot of an older version (its batch's newest ts then
    stands for the first one: kept at least as long as before)."""
    for batch in dedup.expiry:
        for key in batch.keys:
            tick_id, first_ts = _id_entry(key, batch.newest_ms)
            if tick_id is not None:
                dedup.ids[tick_id] = first_ts
                dedup.seen.discard(key)
    return dedup


def _id_entry(key: object, batch_newest_ms: int) -> tuple[str | None, int]:
    """(tick_id, first ts) for an id entry of a key batch, (None, 0) for a
    (provider, symbol, ts) key."""
    if type(key) is str:  # a bare id, from an older snapshot
        return key, batch_newest_ms
    if type(key) is tuple and len(key) == 2:
        return key[0], key[1]
    return None, 0


def resume(state: Deduplicator | DedupSnapshot | None, horizon_ms: int) -> Deduplicator:
    """The state to run with: restored, or new."""
    if state is None:
        return Deduplicator(horizon_ms)
    return state.restore() if isinstance(state, DedupSnapshot) else state


def _is_key_tuple(keys: object) -> bool:
    return isinstance(keys, tuple) and not (len(keys) == 3 and isinstance(keys[2], int))
