"""Cheap snapshots of a ``PortfolioShard`` for Bytewax recovery.

Bytewax asks every stateful step for a snapshot at the end of each epoch
(with or without recovery configured). A deep copy of a shard holding
thousands of ledgers costs seconds, and the worker stalls meanwhile. But a
ledger changes only when a transaction reaches it, while prices and
valuations change every window. So a snapshot is one pickle per portfolio
ledger, re-pickled only when the shard marked it dirty, plus one pickle of
the rest of the shard (prices, buffers, day marks: small). The holders
index is rebuilt from the ledgers on restore; the valuer's caches start
empty.

Guarantee: ``restore(snapshotter.take(shard))`` equals ``shard`` as it was
when ``take`` ran (all fields compared by ``PortfolioShard.__eq__``), as
long as every change to a ledger went through ``PortfolioShard`` (which
marks it dirty).
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import NamedTuple

from flows.portfolio.fast_valuation import Valuer
from flows.portfolio.holders import HoldersIndex
from flows.valuation.shard import PortfolioShard

_PROTOCOL = pickle.HIGHEST_PROTOCOL


class ShardSnapshot(NamedTuple):
    ledgers: dict[str, bytes]  # portfolio id -> pickled PortfolioState
    rest: bytes  # the shard without ledgers, holders index or valuer


class ShardSnapshotter:
    """Takes snapshots of one shard, keeping each ledger's pickle until the
    ledger changes."""

    def __init__(self, ledgers: dict[str, bytes] | None = None) -> None:
        self._ledgers: dict[str, bytes] = dict(ledgers or {})

    def take(self, shard: PortfolioShard) -> ShardSnapshot:
        """A snapshot of ``shard`` now; clears its dirty set."""
        cache = self._ledgers
        for pid in shard.dirty:
            cache[pid] = pickle.dumps(shard.states[pid], _PROTOCOL)
        shard.dirty.clear()
        for pid, state in shard.states.items():
            if pid not in cache:  # e.g. a state added without going through the shard
                cache[pid] = pickle.dumps(state, _PROTOCOL)
        rest = dataclasses.replace(
            shard, states={}, holders=HoldersIndex(), valuer=Valuer(), dirty=set()
        )
        return ShardSnapshot(dict(cache), pickle.dumps(rest, _PROTOCOL))


def restore(snapshot: ShardSnapshot) -> tuple[PortfolioShard, ShardSnapshotter]:
    """The shard a snapshot was taken of, and a snapshotter that already
    holds its ledgers' pickles."""
    shard: PortfolioShard = pickle.loads(snapshot.rest)
    shard.states = {pid: pickle.loads(raw) for pid, raw in snapshot.ledgers.items()}
    shard.holders = HoldersIndex.from_states(shard.states.values())
    return shard, ShardSnapshotter(snapshot.ledgers)
