"""Dashboard state per user shard (``users#{crc32(user_id) % n}``), and the
routing that turns portfolio shard outputs, alerts and drift rules into at
most one item per user shard.

Keying by a user shard rather than by user keeps Bytewax's per-item cost
per batch (at most n items per shard output), not per valuation.

Emission: ``flush`` returns one ``DashboardUpdate`` per user with a card
whose version rose since it was last emitted, and nothing else; the
Bytewax step calls it at most once per ``flush_ms`` of wall time, so a user
gets at most one update per live window however many inputs arrived.
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, NamedTuple

from flows.alerts.stream import RuleChange, split_end
from flows.dashboard.benchmark import Benchmark
from flows.dashboard.board import PERFORMANCE, DashboardUpdate, UserBoard
from flows.dashboard.compute import Caches, CardMaker, CardSettings
from flows.dashboard.targets import DriftTarget, TargetChange, drift_target
from flows.portfolio.valuation_record import ValuationRecord
from flows.valuation.shard import AppliedTransaction, ShardOutput
from schemas.alerts import Alert

_PROTOCOL = pickle.HIGHEST_PROTOCOL


class ShardInput(NamedTuple):
    """What one user shard gets from one upstream item."""

    live: list[ValuationRecord]
    applied: list[AppliedTransaction]
    benchmarks: list[tuple[str, int, Decimal]]
    alerts: list[Alert]
    targets: Sequence[TargetChange] = ()  # drift targets set or removed


class Router:
    """Splits upstream items by user shard; caches each user's shard."""

    def __init__(self, shards: int, benchmark_source: str) -> None:
        self.keys = tuple(f"users#{i}" for i in range(shards))
        self.benchmark_source = benchmark_source  # the one portfolio shard whose prices count
        self._shard_of: dict[str, str] = {}

    def key(self, user_id: str) -> str:
        key = self._shard_of.get(user_id)
        if key is None:
            key = self.keys[zlib.crc32(user_id.encode()) % len(self.keys)]
            self._shard_of[user_id] = key
        return key

    def _slot(self, slots: dict[str, ShardInput], key: str) -> ShardInput:
        slot = slots.get(key)
        if slot is None:
            slot = slots[key] = ShardInput([], [], [], [], [])
        return slot

    def output(self, source: str, out: ShardOutput) -> list[tuple[str, ShardInput]]:
        slots: dict[str, ShardInput] = {}
        for record in out.live:
            self._slot(slots, self.key(record.user_id)).live.append(record)
        for applied in out.applied:
            self._slot(slots, self.key(applied.txn.user_id)).applied.append(applied)
        if out.benchmarks and source == self.benchmark_source:
            for key in self.keys:
                self._slot(slots, key).benchmarks.extend(out.benchmarks)
        return list(slots.items())

    def rules(self, changes: list[RuleChange]) -> list[tuple[str, ShardInput]]:
        """Drift targets to the user's shard, and a removal of each changed
        rule_id to every other shard: a tombstone names no user, and a rule
        that moved to another user or stopped being a drift rule must leave
        wherever it was. Rules are few, so broadcasting ids is cheap."""
        changes, _ = split_end(changes)
        if not changes:
            return []
        out = []
        targets = [(rule_id, drift_target(rule)) for rule_id, rule in changes]
        for key in self.keys:
            mine = [
                (rule_id, t if t and self.key(t.user_id) == key else None) for rule_id, t in targets
            ]
            out.append((key, ShardInput([], [], [], [], mine)))
        return out

    def alerts(self, alerts: list[Alert]) -> list[tuple[str, ShardInput]]:
        slots: dict[str, ShardInput] = {}
        for alert in alerts:
            self._slot(slots, self.key(alert.user_id)).alerts.append(alert)
        return list(slots.items())


@dataclass
class DashboardShard:
    settings: CardSettings = field(default_factory=CardSettings)
    users: dict[str, UserBoard] = field(default_factory=dict)
    bench: Benchmark = field(default_factory=Benchmark)
    pending: set[str] = field(default_factory=set)  # users with dirty cards
    waiting: set[str] = field(default_factory=set)  # performance computed ahead of the benchmark
    rule_owners: dict[str, str] = field(default_factory=dict)  # drift rule_id -> user_id
    caches: Caches = field(default_factory=Caches, compare=False, repr=False)
    changed: set[str] = field(default_factory=set, compare=False, repr=False)  # since snapshot

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Snapshots of older versions lack the newer fields (defaults) and
        # may carry dropped ones (ignored).
        defaults = vars(DashboardShard())
        self.__dict__.update(defaults | {k: v for k, v in state.items() if k in defaults})

    def board(self, user_id: str) -> UserBoard:
        board = self.users.get(user_id)
        if board is None:
            board = self.users[user_id] = UserBoard(user_id)
        self.pending.add(user_id)
        self.changed.add(user_id)
        return board

    def add(self, item: ShardInput) -> None:
        keep = self.settings.activity_items
        moved = False
        for symbol, ts_ms, price in item.benchmarks:
            if symbol == self.settings.benchmark:
                moved = self.bench.add(ts_ms, price) or moved
        if moved and self.waiting:
            for user_id in self.waiting:
                self.board(user_id).dirty.add(PERFORMANCE)
            self.waiting.clear()
        for rule_id, target in item.targets:
            self._target(rule_id, target)
        for applied in item.applied:  # before valuations: a flow precedes its window's close
            self.board(applied.txn.user_id).add_applied(applied, keep)
        for record in item.live:
            self.board(record.user_id).add_valuation(record)
        for alert in item.alerts:
            self.board(alert.user_id).add_alert(alert, keep)

    def _target(self, rule_id: str, target: DriftTarget | None) -> None:
        owner = self.rule_owners.pop(rule_id, None)
        if owner is not None and (target is None or target.user_id != owner):
            self.board(owner).set_target(rule_id, None)
        if target is not None:
            self.rule_owners[rule_id] = target.user_id
            self.board(target.user_id).set_target(rule_id, target)

    def flush(self) -> list[DashboardUpdate]:
        """The changed cards of every user touched since the last flush."""
        maker = CardMaker(self.settings, self.caches)
        out = []
        for user_id in sorted(self.pending):
            board = self.users[user_id]
            cards = board.publish(maker.bodies(board, self.bench))
            if cards:
                out.append(DashboardUpdate(user_id, cards))
        self.pending.clear()
        self.waiting.update(maker.waiting)
        return out


class DashboardSnapshot(NamedTuple):
    users: dict[str, bytes]  # user id -> pickled UserBoard
    rest: bytes  # the shard without users


class Snapshotter:
    """Re-pickles only the users changed since the last snapshot (as
    ``flows.valuation.snapshot`` does for ledgers)."""

    def __init__(self, users: dict[str, bytes] | None = None) -> None:
        self._users = dict(users or {})

    def take(self, shard: DashboardShard) -> DashboardSnapshot:
        for user_id in shard.changed:
            self._users[user_id] = pickle.dumps(shard.users[user_id], _PROTOCOL)
        shard.changed.clear()
        rest = replace(shard, users={}, caches=Caches(), changed=set())
        return DashboardSnapshot(dict(self._users), pickle.dumps(rest, _PROTOCOL))


def restore(snapshot: DashboardSnapshot) -> tuple[DashboardShard, Snapshotter]:
    shard: DashboardShard = pickle.loads(snapshot.rest)
    shard.users = {uid: pickle.loads(raw) for uid, raw in snapshot.users.items()}
    return shard, Snapshotter(snapshot.users)
