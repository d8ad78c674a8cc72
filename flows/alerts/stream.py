"""Alerts in the dataflow: rule changes from ``alerts.rules`` reach the
shards that evaluate them, and price rules run next to the prices.

Routing: rules watching a symbol go to every price shard (rule changes are
rare, prices are many: moving rules is cheaper than re-keying prices); rules
watching a portfolio go to every portfolio shard; a tombstone carries only
its rule_id, so it goes everywhere. A price shard parks ``feed_stale`` rules
for symbols it has never priced: only the shard that carries a symbol may
decide that its feed went silent.

Rules before prices: a rule that reaches a shard after prices that crossed
it fires at a different crossing, so with ``rule_partitions`` > 0 both
alert steps hold their input after each (re)start until every partition of
the rules topic was read to its end (the source's end markers, decoded as
``rules_end(partition)`` and routed to every shard like tombstones). Held
input lives in the snapshotted state.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bytewax.operators import StatefulBatchLogic

from flows.alerts.engine import RuleBook
from flows.alerts.inputs import observe_transaction, observe_valuation
from flows.ingest.quiet import quiet_ms, restarted
from flows.ingest.records import Rejection, SourcedTick
from flows.ingest.steps import Clock
from schemas.alerts import Alert, AlertKind, AlertRule, RuleInvalid, decode_rule_record
from schemas.envelope import RawBatch

RuleChange = tuple[str, AlertRule | None]  # (rule_id, rule or None for a removal)
_END = "#end:"  # no real rule_id contains "#"


def rules_end(partition: int) -> RuleChange:
    """The change that says: partition ``partition`` of the rules topic was read to its end."""
    return (f"{_END}{partition}", None)


_RETAIN = False
STALE_CHECK_MS = 1_000


def decode_rules(batch: RawBatch) -> tuple[list[RuleChange], list[Rejection]]:
    if not batch.records:  # the source's end marker
        return [rules_end(batch.partition)], []
    changes: list[RuleChange] = []
    rejected: list[Rejection] = []
    for offset, key, value in batch.records:
        try:
            changes.append(decode_rule_record(key, value))
        except (RuleInvalid, UnicodeDecodeError) as exc:
            rejected.append(
                Rejection(
                    "invalid_rule",
                    str(exc)[:300],
                    "rules",
                    batch.topic,
                    batch.partition,
                    offset,
                    key,
                    value,
                )
            )
    return changes, rejected


def route_rules(
    changes: list[RuleChange], price_shards: tuple[str, ...], portfolio_shards: tuple[str, ...]
) -> list[tuple[str, tuple[str, list[RuleChange]]]]:
    """(shard key, ("rules", changes for that shard)) for every shard concerned."""
    for_prices = [c for c in changes if c[1] is None or c[1].portfolio_id is None]
    for_portfolios = [c for c in changes if c[1] is None or c[1].portfolio_id is not None]
    routed = [(shard, ("rules", for_prices)) for shard in price_shards if for_prices]
    routed += [(shard, ("rules", for_portfolios)) for shard in portfolio_shards if for_portfolios]
    return routed


def split_end(changes: list[RuleChange]) -> tuple[list[RuleChange], set[str]]:
    """(the real rule changes, the end markers among them)."""
    real = [c for c in changes if not c[0].startswith(_END)]
    return real, {c[0] for c in changes if c[0].startswith(_END)}


class _RulesGate:
    """Open once every rules partition's end marker arrived (at once for 0
    partitions); not snapshotted, so every (re)start waits again."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.ended: set[str] = set()

    @property
    def open(self) -> bool:
        return len(self.ended) >= self.partitions

    def saw(self, ends: set[str]) -> bool:
        """Record end markers; True if this opened the gate."""
        was_open = self.open
        self.ended |= ends
        return self.open and not was_open


@dataclass
class PriceAlerts:
    book: RuleBook = field(default_factory=RuleBook)
    seen: set[str] = field(default_factory=set)
    parked: dict[str, dict[str, AlertRule]] = field(default_factory=dict)  # symbol -> stale rules
    newest_ms: int | None = None
    newest_at_sys_ms: int = 0
    waiting: list[list[SourcedTick]] = field(default_factory=list)  # until the rules are read

    def apply_rules(self, changes: list[RuleChange]) -> None:
        # Which symbol each parked rule waits on, once per batch: looking
        # through every parked symbol per change cost O(changes x symbols)
        # (~3 s of CPU to load 100,000 rules for 1,000 unpriced symbols).
        parked_on = {rule_id: s for s, waiting in self.parked.items() for rule_id in waiting}
        for rule_id, rule in changes:
            symbol = parked_on.pop(rule_id, None)
            if symbol is not None:
                del self.parked[symbol][rule_id]
            if rule is None:
                self.book.remove(rule_id)
            elif rule.kind is AlertKind.FEED_STALE and rule.symbol not in self.seen:
                self.book.remove(rule_id)
                self.parked.setdefault(str(rule.symbol), {})[rule_id] = rule
                parked_on[rule_id] = str(rule.symbol)
            else:
                self.book.upsert(rule)

    def observe(self, ticks: list[SourcedTick], now_sys_ms: int) -> list[Alert]:
        alerts: list[Alert] = []
        seen, on_price = self.seen, self.book.on_price  # per tick: no attribute lookups
        newest = self.newest_ms
        for item in ticks:
            symbol, price, ts_ms = item.tick[:3]
            if symbol not in seen:
                seen.add(symbol)
                for rule in self.parked.pop(symbol, {}).values():
                    self.book.upsert(rule)
            fired = on_price(symbol, price, ts_ms)
            if fired:
                alerts += fired
            if newest is None or ts_ms > newest:
                newest = ts_ms
        if newest != self.newest_ms:
            self.newest_ms, self.newest_at_sys_ms = newest, now_sys_ms
        return alerts + self.tick(now_sys_ms)

    def tick(self, now_sys_ms: int) -> list[Alert]:
        """Event time moves on with system time while a live shard is quiet
        (never while it replays a backlog: ``flows.ingest.quiet``)."""
        if self.newest_ms is None:
            return []
        idle = quiet_ms(self.newest_ms, self.newest_at_sys_ms, now_sys_ms)
        return self.book.on_watermark(self.newest_ms + idle)


ShardIn = tuple[str, Any]  # ("rules", [RuleChange]) or ("prices", [SourcedTick])


def _freeze(state: object) -> bytes:
    """A snapshot: the state pickled now, once. A deep copy (Bytewax may
    serialise the snapshot later) costs twice a pickle, and Bytewax then
    pickled the copy again: ~12 s of CPU per epoch with 100,000 rules, ~3.6 s
    this way."""
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def _thaw(state: Any) -> Any:
    """Resume from a snapshot: bytes, or the object older versions stored."""
    return pickle.loads(state) if isinstance(state, bytes) else state


class PriceAlertLogic(StatefulBatchLogic[ShardIn, list[Alert], bytes]):
    def __init__(self, state: PriceAlerts | bytes, clock: Clock, rule_partitions: int = 0) -> None:
        restored: PriceAlerts = _thaw(state)
        self.state = restored
        self.clock = clock
        # Built once per execution: a restored shard's downtime is not a quiet
        # feed, and the rules are awaited again.
        restored.newest_at_sys_ms = restarted(restored.newest_at_sys_ms, clock())
        restored.__dict__.setdefault("waiting", [])  # snapshots from before it existed
        self.gate = _RulesGate(rule_partitions)

    def on_batch(self, values: list[ShardIn]) -> tuple[list[list[Alert]], bool]:
        now = self.clock()
        alerts: list[Alert] = []
        for kind, payload in values:
            if kind == "rules":
                changes, ends = split_end(payload)
                self.state.apply_rules(changes)
                if self.gate.saw(ends):
                    for ticks in self.state.waiting:
                        alerts += self.state.observe(ticks, now)
                    self.state.waiting = []
            elif self.gate.open:
                alerts += self.state.observe(payload, now)
            else:
                self.state.waiting.append(payload)
        return ([alerts] if alerts else []), _RETAIN

    def on_notify(self) -> tuple[list[list[Alert]], bool]:
        alerts = self.state.tick(self.clock())
        return ([alerts] if alerts else []), _RETAIN

    def notify_at(self) -> datetime | None:
        if self.state.newest_ms is None:
            return None
        return datetime.fromtimestamp((self.clock() + STALE_CHECK_MS) / 1000, tz=UTC)

    def snapshot(self) -> bytes:
        return _freeze(self.state)


@dataclass
class PortfolioAlerts:
    book: RuleBook = field(default_factory=RuleBook)
    waiting: list[Any] = field(default_factory=list)  # shard outputs until the rules are read


class PortfolioAlertLogic(StatefulBatchLogic[ShardIn, list[Alert], bytes]):
    """Portfolio rules next to the portfolio shard's output: valuations
    (goal, drawdown, pct_move, concentration, drift) and applied dividends."""

    def __init__(self, state: PortfolioAlerts | RuleBook | bytes, rule_partitions: int = 0) -> None:
        restored: PortfolioAlerts | RuleBook = _thaw(state)
        # A bare RuleBook: a snapshot from before PortfolioAlerts existed.
        if isinstance(restored, RuleBook):
            restored = PortfolioAlerts(restored)
        self.state = restored
        self.gate = _RulesGate(rule_partitions)

    def on_batch(self, values: list[ShardIn]) -> tuple[list[list[Alert]], bool]:
        alerts: list[Alert] = []
        book = self.state.book
        for kind, payload in values:
            if kind == "rules":
                changes, ends = split_end(payload)
                for rule_id, rule in changes:
                    if rule is None:
                        book.remove(rule_id)
                    else:
                        book.upsert(rule)
                if self.gate.saw(ends):
                    for out in self.state.waiting:
                        alerts += observe_shard_output(book, out)
                    self.state.waiting = []
            elif self.gate.open:
                alerts += observe_shard_output(book, payload)
            else:
                self.state.waiting.append(payload)
        return ([alerts] if alerts else []), _RETAIN

    def snapshot(self) -> bytes:
        return _freeze(self.state)


def observe_shard_output(book: RuleBook, out: Any) -> list[Alert]:
    alerts: list[Alert] = []
    for applied in out.applied:
        alerts += observe_transaction(book, applied.txn)
    for valuation in out.live:
        alerts += observe_valuation(book, valuation)
    return alerts
