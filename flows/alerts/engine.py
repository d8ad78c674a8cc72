"""The alert engine: ``RuleBook`` turns event-time observations into alerts.

Guarantees:

- **Crossings, not levels.** A rule fires when its value reaches the
  threshold while armed, then stays disarmed until the value moves back past
  threshold -/+ hysteresis. A new rule starts armed, so if its condition
  already holds it fires once on its first observation.
- **Cooldown** (event time): a crossing within ``cooldown_ms`` of the rule's
  previous alert is swallowed (the rule still disarms; it fires again only
  after re-arming and crossing again past the cooldown).
- **Pause/resume.** ``active: false`` takes a rule out of evaluation but
  keeps its state (last alert time, drawdown peak). On resume it re-arms
  from the current value: if the value is already past the threshold, the
  rule starts disarmed, so a crossing that happened while paused never
  fires; it fires on the next crossing after moving back.
- **Redefinition.** An upsert that changes what the rule watches (anything
  but ``active`` and ``version``) restarts it as new; an older ``version``
  than the one held is ignored; the same definition again is a no-op.
- **Exactly once per crossing.** Each series (a symbol's prices, a
  portfolio's valuations, the watermark) accepts only strictly increasing
  event times; anything older or equal is a replay and is ignored. Together
  with deterministic ``alert_id`` s this means: the same inputs in the same
  order give the same alerts with the same ids, and inputs replayed into an
  engine restored from a snapshot give no duplicates.
- **Cost.** Rules are indexed by symbol and portfolio; an observation only
  touches its own series, and within it threshold rules sit in sorted
  ladders (``flows.alerts.ladder``). ``evaluations`` counts every rule whose
  state an observation examined.

``pickle`` a ``RuleBook`` to snapshot it: only what the rules do not
determine is pickled, and the rules only where they changed
(``flows.alerts.snapshot``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal

from flows.alerts import placement, portfolio, render, snapshot, staleness
from flows.alerts.ladder import Ladder
from flows.alerts.numbers import CTX, HUNDRED, ZERO, q6
from flows.alerts.placement import Books
from flows.alerts.segments import Segments
from flows.alerts.state import RuleState, Series
from schemas.alerts import Alert, AlertKind, AlertRule

log = logging.getLogger(__name__)


class RuleBook:
    """All rules of one engine instance and their state. Not thread-safe:
    one instance per Bytewax key/worker."""

    def __init__(self) -> None:
        self._rules: dict[str, RuleState] = {}
        self._segments = Segments()  # the same rules, for snapshots
        self._books = Books()
        self._watermark: int | None = None
        # No feed_stale rule can fire before this watermark (None: look at
        # the next one). Prices only push it later; placing a rule or
        # re-arming one resets it.
        self._stale_due: int | None = None
        # Bumped by every rule change: the series' cached quiet bands
        # (Series.band) from before it no longer hold.
        self._epoch = 0
        self.observations = 0  # inputs received (prices, valuations, dividends)
        self.evaluations = 0  # rules examined by those inputs and watermarks
        self.ignored = 0  # replayed or duplicate inputs dropped
        self.suppressed = 0  # crossings swallowed by a cooldown

    def __getstate__(self) -> dict[str, object]:
        return snapshot.get_state(self.__dict__)

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(snapshot.set_state(state))

    # -- rules -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._rules)

    def get(self, rule_id: str) -> AlertRule | None:
        state = self._rules.get(rule_id)
        return None if state is None else state.rule

    def upsert(self, rule: AlertRule) -> None:
        """Add, change, pause or resume a rule (see the module docstring)."""
        self._stale_due = None
        self._epoch += 1
        current = self._rules.get(rule.rule_id)
        if current is None:
            self._start(RuleState(rule))
            return
        old = current.rule
        if rule.version < old.version:
            log.info("ignoring rule %s v%d: holding v%d", rule.rule_id, rule.version, old.version)
            return
        if rule.definition() != old.definition():
            self._stop(current)
            self._start(RuleState(rule))
            return
        current.rule = rule
        self._segments.replace(rule)
        if old.active and not rule.active:
            placement.unplace(self._books, current)
        elif rule.active and not old.active:
            if rule.kind is AlertKind.FEED_STALE:
                staleness.refresh(self._books, str(rule.symbol), self._watermark)
            placement.place(self._books, current, resume=True)

    def remove(self, rule_id: str) -> bool:
        """Forget a rule and its state; False if it was not held."""
        state = self._rules.get(rule_id)
        if state is None:
            return False
        self._epoch += 1
        self._stop(state)
        return True

    def _start(self, state: RuleState) -> None:
        self._rules[state.rule.rule_id] = state
        self._segments.add(state.rule)
        placement.attach(self._books, state)
        if state.rule.active:
            placement.place(self._books, state, resume=False)

    def _stop(self, state: RuleState) -> None:
        self._segments.remove(state.rule.rule_id)
        if state.rule.active:
            placement.unplace(self._books, state)
        placement.detach(self._books, state)
        del self._rules[state.rule.rule_id]

    # -- firing ------------------------------------------------------------

    def _gate(self, state: RuleState, ts_ms: int) -> bool:
        """Cooldown check for a crossing; records the firing when allowed."""
        last = state.last_fired_ms
        if last is not None and abs(ts_ms - last) < state.rule.cooldown_ms:
            self.suppressed += 1
            return False
        state.last_fired_ms = ts_ms
        return True

    def _crossed(self, ladder: Ladder, value: Decimal, ts_ms: int) -> list[RuleState]:
        fired, rearmed = ladder.observe(value)
        if not fired:
            self.evaluations += rearmed
            return []
        self.evaluations += len(fired) + rearmed
        rules = self._rules
        return [state for rule_id in fired if self._gate(state := rules[rule_id], ts_ms)]

    def _moves(self, series: Series, value: Decimal, ts_ms: int, alerts: list[Alert]) -> None:
        for rules in series.moves.values():
            window, ladder = rules.window, rules.ladder
            armed, disarmed = ladder.armed, ladder.disarmed
            fire_at = armed[0][0] if armed else None
            rearm_below = disarmed[-1][0] if disarmed else None
            if window.push(ts_ms, value, fire_at, rearm_below):
                move = window.move(value)
                for state in self._crossed(ladder, move.size, ts_ms):
                    alerts.append(render.pct_move(state.rule, move, value, ts_ms))

    def _thresholds(self, series: Series, price: Decimal, ts_ms: int, alerts: list[Alert]) -> None:
        """price_above and price_below rules; the ladders' ends say whether
        to call them (Ladder.observe does the same checks first)."""
        ladder = series.above
        armed, disarmed = ladder.armed, ladder.disarmed
        if (armed and armed[0][0] <= price) or (disarmed and disarmed[-1][0] > price):
            for state in self._crossed(ladder, price, ts_ms):
                alerts.append(render.price_crossing(state.rule, price, ts_ms))
        ladder = series.below  # keys negated
        armed, disarmed = ladder.armed, ladder.disarmed
        neg = -price
        if (armed and armed[0][0] <= neg) or (disarmed and disarmed[-1][0] > neg):
            for state in self._crossed(ladder, price, ts_ms):
                alerts.append(render.price_crossing(state.rule, price, ts_ms))

    # -- inputs ------------------------------------------------------------

    def on_price(self, symbol: str, price: Decimal, ts_ms: int) -> list[Alert]:
        """A consolidated price: price_above/below, pct_move, feed_stale re-arm."""
        self.observations += 1
        book = self._books.symbols.get(symbol)
        if book is None:
            return []
        series = book.series
        if series.last_ts is not None and ts_ms <= series.last_ts:  # Series.accept, inlined
            self.ignored += 1
            return []
        series.last_ts, series.last_value = ts_ms, price
        alerts: list[Alert] = []
        # Most prices change no rule's state: the series' quiet band says so
        # (worked out again after a crossing or any rule change).
        band = series.band
        if band is None or band[0] != self._epoch:
            band = series.band = (self._epoch, *series.quiet_band())
        if not band[1] < price < band[2]:
            series.band = None
            self._thresholds(series, price, ts_ms, alerts)
        if series.moves:
            self._moves(series, price, ts_ms, alerts)
        if book.stale_rules:
            if book.since_ms is not None:  # first price: it may be older than since_ms
                self._stale_due = None
            book.staleness, book.since_ms = ZERO, None
            if book.stale.disarmed:
                self._crossed(book.stale, ZERO, ts_ms)  # a fresh price only re-arms
                self._stale_due = None
        return alerts

    def on_valuation(
        self,
        portfolio_id: str,
        market_value: Decimal,
        weights: Mapping[str, Decimal],
        ts_ms: int,
    ) -> list[Alert]:
        """A portfolio valuation: ``market_value`` is the value drawdown,
        goal_reached and pct_move watch (``Valuation.market_value`` includes
        cash); ``weights`` are position weights as fractions (0.25 = 25 %),
        as in ``PositionValue.weight``."""
        self.observations += 1
        book = self._books.portfolios.get(portfolio_id)
        if book is None:
            return []
        series = book.series
        if not series.accept(ts_ms, market_value):
            self.ignored += 1
            return []
        book.weights = {s: q6(CTX.multiply(w, HUNDRED)) for s, w in weights.items()}
        alerts: list[Alert] = []
        if series.above.armed or series.above.disarmed:
            for state in self._crossed(series.above, market_value, ts_ms):
                alerts.append(render.goal_reached(state.rule, market_value, ts_ms))
        if series.moves:
            self._moves(series, market_value, ts_ms, alerts)
        for rule_id in book.linear:
            self.evaluations += 1
            state = self._rules[rule_id]
            alerts.extend(portfolio.evaluate(state, book, market_value, ts_ms, self._gate))
        return alerts

    def on_dividend(
        self,
        portfolio_id: str,
        txn_id: str,
        amount: Decimal,
        ts_ms: int,
        symbol: str | None = None,
        currency: str = "USD",
    ) -> list[Alert]:
        """A dividend transaction; a redelivered ``txn_id`` is ignored."""
        self.observations += 1
        book = self._books.portfolios.get(portfolio_id)
        if book is None or not book.dividends:
            return []
        if not book.first_sight(txn_id):
            self.ignored += 1
            return []
        alerts: list[Alert] = []
        for rule_id in book.dividends:
            self.evaluations += 1
            state = self._rules[rule_id]
            rule = state.rule
            if not rule.active or amount < rule.threshold:
                continue
            if rule.symbol is not None and rule.symbol != symbol:
                continue
            if self._gate(state, ts_ms):
                alerts.append(render.dividend(rule, txn_id, symbol, amount, currency, ts_ms))
        return alerts

    def on_watermark(self, ts_ms: int) -> list[Alert]:
        """Event time has reached ``ts_ms``: evaluate feed_stale rules
        (``flows.alerts.staleness``). A watermark not after the previous one
        is ignored. Cost: O(1) until the earliest moment a feed_stale rule
        could fire (as of the last look), then O(symbols with feed_stale
        rules)."""
        if self._watermark is not None and ts_ms <= self._watermark:
            return []
        self._watermark = ts_ms
        if self._stale_due is not None and ts_ms < self._stale_due:
            return []
        alerts, self._stale_due = staleness.evaluate(self._books, ts_ms, self._crossed)
        return alerts

    def stats(self) -> dict[str, int]:
        return {
            "rules": len(self._rules),
            "observations": self.observations,
            "evaluations": self.evaluations,
            "ignored": self.ignored,
            "suppressed": self.suppressed,
        }
