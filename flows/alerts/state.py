"""The engine's state: plain slotted dataclasses, lists, dicts and deques,
so a ``RuleBook`` pickles as is (Bytewax snapshots it).

Dicts are used as ordered sets wherever iteration order matters: set order
depends on string hashing, which differs between processes, and the
engine's output order must not.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from flows.alerts.ladder import Ladder
from flows.alerts.window import Move, MoveWindow
from schemas.alerts import AlertRule

# Dividend transaction ids remembered per portfolio to drop redelivered ones.
SEEN_TXNS = 1024
_NO_LOW, _NO_HIGH = Decimal("-Infinity"), Decimal("Infinity")
_SERIES_STATE = ("last_ts", "last_value", "above", "below", "moves", "rules")


@dataclass(slots=True)
class RuleState:
    """One rule and what it remembers between observations."""

    rule: AlertRule
    last_fired_ms: int | None = None
    peak: Decimal | None = None  # drawdown: highest value since the rule (re)started
    # Non-ladder kinds: subjects ("" or a position's symbol) that fired and
    # wait for the value to move back past threshold - hysteresis.
    disarmed: dict[str, None] = field(default_factory=dict)


@dataclass(slots=True)
class WindowRules:
    """pct_move rules sharing one window length on one series."""

    window: MoveWindow
    ladder: Ladder = field(default_factory=Ladder)
    current: Move | None = None  # unused (computed on demand); older snapshots carry it
    rules: int = 0  # attached rules, active or paused


@dataclass(slots=True)
class Series:
    """One stream of observations: a symbol's price or a portfolio's value.
    Observations must come with strictly increasing event time; an older or
    equal one is a replay or duplicate (prices and valuations are versioned
    by event time) and is ignored."""

    last_ts: int | None = None
    last_value: Decimal | None = None
    above: Ladder = field(default_factory=Ladder)
    below: Ladder = field(default_factory=lambda: Ladder(lower=True))
    moves: dict[int, WindowRules] = field(default_factory=dict)
    rules: dict[str, None] = field(default_factory=dict)  # every attached rule
    # (rule-set epoch, low, high): observations strictly between low and
    # high change no threshold rule in ``above`` or ``below`` (see
    # ``quiet_band``). Derived, never pickled; None: work it out again.
    band: tuple[int, Decimal, Decimal] | None = field(default=None, compare=False, repr=False)

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        return None, {name: getattr(self, name) for name in _SERIES_STATE}

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        # The form a slotted object pickles in (older snapshots hold it too).
        for name, value in state[1].items():
            setattr(self, name, value)
        self.band = None

    def quiet_band(self) -> tuple[Decimal, Decimal]:
        """(low, high): a value strictly between them fires and re-arms no
        rule in ``above`` (fires at >= its armed keys, re-arms below its
        disarmed keys) or ``below`` (keys negated), so one chained comparison
        per observation replaces four looks into the ladders."""
        above, below = self.above, self.below
        low, high = _NO_LOW, _NO_HIGH
        if above.disarmed:
            low = max(low, above.disarmed[-1][0])
        if below.armed:
            low = max(low, -below.armed[0][0])
        if above.armed:
            high = min(high, above.armed[0][0])
        if below.disarmed:
            high = min(high, -below.disarmed[-1][0])
        return low, high

    def accept(self, ts_ms: int, value: Decimal) -> bool:
        if self.last_ts is not None and ts_ms <= self.last_ts:
            return False
        self.last_ts, self.last_value = ts_ms, value
        return True


@dataclass(slots=True)
class SymbolBook:
    series: Series = field(default_factory=Series)
    stale: Ladder = field(default_factory=Ladder)
    stale_rules: int = 0
    staleness: Decimal | None = None  # seconds, as of the latest watermark
    # Start of the current stale episode when no price has been seen yet:
    # the first watermark after the symbol got a feed_stale rule.
    since_ms: int | None = None


@dataclass(slots=True)
class PortfolioBook:
    series: Series = field(default_factory=Series)
    linear: dict[str, None] = field(default_factory=dict)  # drawdown/concentration/drift
    dividends: dict[str, None] = field(default_factory=dict)
    weights: dict[str, Decimal] = field(default_factory=dict)  # percent, latest valuation
    seen_txns: deque[str] = field(default_factory=lambda: deque(maxlen=SEEN_TXNS))
    seen_set: dict[str, None] = field(default_factory=dict)

    def first_sight(self, txn_id: str) -> bool:
        """True once per transaction id (within the last ``SEEN_TXNS``)."""
        if txn_id in self.seen_set:
            return False
        if len(self.seen_txns) == self.seen_txns.maxlen:
            self.seen_set.pop(self.seen_txns[0], None)
        self.seen_txns.append(txn_id)
        self.seen_set[txn_id] = None
        return True
