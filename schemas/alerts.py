"""Alert rules (``alerts.rules``, key: rule_id) and fired alerts
(``portfolio.alerts``, key: user_id).

A rule watches one subject: a symbol (``price_above``, ``price_below``,
``feed_stale``, ``pct_move`` on a symbol) or a portfolio (``pct_move`` on a
portfolio, ``drawdown``, ``concentration``, ``drift``, ``goal_reached``,
``dividend_received``). Thresholds are inclusive ("reaches or passes").
Units of ``threshold`` and ``hysteresis`` by kind:

- ``price_above`` / ``price_below``: price, in the symbol's quote currency.
- ``pct_move``, ``drawdown``, ``concentration``: percent (5 = 5 %).
- ``drift``: percentage points between actual and ``target`` weights.
- ``goal_reached``: portfolio value, in its base currency.
- ``dividend_received``: smallest amount that alerts (0: every dividend).
- ``feed_stale``: seconds without a consolidated price.

``version`` rises whenever the rule changes (the rule store bumps it); an
alert's ``alert_id`` is derived from (rule_id, version, crossing identity),
so a replayed crossing always gets the same id.

On the ``alerts.rules`` topic a record's value is the rule as JSON; a
tombstone (value None) removes the rule; ``active: false`` pauses it.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from schemas.common import SCHEMA_VERSION, ExactDecimal, Symbol, UtcDatetime, datetime_to_ms
from schemas.transactions import Identifier

HUNDRED = Decimal(100)


class AlertKind(StrEnum):
    PRICE_ABOVE = "price_above"
    PRICE_BELOW = "price_below"
    PCT_MOVE = "pct_move"
    DRAWDOWN = "drawdown"
    CONCENTRATION = "concentration"
    DRIFT = "drift"
    GOAL_REACHED = "goal_reached"
    DIVIDEND_RECEIVED = "dividend_received"
    FEED_STALE = "feed_stale"


SYMBOL_KINDS = frozenset({AlertKind.PRICE_ABOVE, AlertKind.PRICE_BELOW, AlertKind.FEED_STALE})
PORTFOLIO_ONLY_KINDS = frozenset({AlertKind.DRAWDOWN, AlertKind.DRIFT, AlertKind.GOAL_REACHED})
# Portfolio kinds where a symbol narrows the rule to one position.
PORTFOLIO_FILTER_KINDS = frozenset({AlertKind.CONCENTRATION, AlertKind.DIVIDEND_RECEIVED})
# Kinds whose threshold is a percentage that cannot exceed 100.
PERCENT_CAP_KINDS = frozenset({AlertKind.DRAWDOWN, AlertKind.CONCENTRATION, AlertKind.DRIFT})
# Kinds that re-arm on an event, not on the value moving back: no hysteresis.
EVENT_KINDS = frozenset({AlertKind.DIVIDEND_RECEIVED, AlertKind.FEED_STALE})


class RuleInvalid(ValueError):
    """A rule breaks a validation rule; the message is one line."""


class AlertRule(BaseModel):
    """One user's alert rule; every field is checked, see ``_check_*``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule_id: Identifier
    user_id: Identifier
    portfolio_id: Identifier | None = None
    symbol: Symbol | None = None
    kind: AlertKind
    threshold: ExactDecimal
    window_ms: StrictInt | None = None
    cooldown_ms: StrictInt = 0
    hysteresis: ExactDecimal = Decimal(0)
    target: dict[Symbol, ExactDecimal] | None = None
    active: bool = True
    version: StrictInt = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _valid(self) -> AlertRule:
        for check in (_check_subject, _check_threshold, _check_window, _check_hysteresis):
            check(self)
        _check_target(self)
        return self

    def definition(self) -> tuple[Any, ...]:
        """What the rule watches and when it fires; ``active`` and
        ``version`` excluded (a change here resets the rule's state)."""
        return (
            self.user_id,
            self.portfolio_id,
            self.symbol,
            self.kind,
            self.threshold,
            self.window_ms,
            self.cooldown_ms,
            self.hysteresis,
            None if self.target is None else tuple(sorted(self.target.items())),
        )


def _check_subject(rule: AlertRule) -> None:
    kind = rule.kind
    if kind in SYMBOL_KINDS:
        if rule.symbol is None:
            raise ValueError(f"{kind} needs a symbol")
        if rule.portfolio_id is not None:
            raise ValueError(f"{kind} watches a symbol; portfolio_id must be empty")
    elif kind is AlertKind.PCT_MOVE:
        if (rule.symbol is None) == (rule.portfolio_id is None):
            raise ValueError("pct_move needs exactly one of symbol or portfolio_id")
    else:
        if rule.portfolio_id is None:
            raise ValueError(f"{kind} needs a portfolio_id")
        if kind in PORTFOLIO_ONLY_KINDS and rule.symbol is not None:
            raise ValueError(f"{kind} watches a whole portfolio; symbol must be empty")


def _check_threshold(rule: AlertRule) -> None:
    kind, threshold = rule.kind, rule.threshold
    if kind is AlertKind.DIVIDEND_RECEIVED:
        if threshold < 0:
            raise ValueError(f"dividend_received threshold must be >= 0, got {threshold}")
        return
    if threshold <= 0:
        raise ValueError(f"{kind} threshold must be > 0, got {threshold}")
    if kind in PERCENT_CAP_KINDS and threshold > HUNDRED:
        raise ValueError(f"{kind} threshold is a percentage and must be <= 100, got {threshold}")


def _check_window(rule: AlertRule) -> None:
    if rule.cooldown_ms < 0:
        raise ValueError(f"cooldown_ms must be >= 0, got {rule.cooldown_ms}")
    if rule.kind is AlertKind.PCT_MOVE:
        if rule.window_ms is None:
            raise ValueError("pct_move needs window_ms")
        if rule.window_ms <= 0:
            raise ValueError(f"window_ms must be > 0, got {rule.window_ms}")
    elif rule.window_ms is not None:
        raise ValueError(f"window_ms only applies to pct_move, not {rule.kind}")


def _check_hysteresis(rule: AlertRule) -> None:
    hysteresis = rule.hysteresis
    if hysteresis < 0:
        raise ValueError(f"hysteresis must be >= 0, got {hysteresis}")
    if rule.kind in EVENT_KINDS:
        if hysteresis != 0:
            raise ValueError(f"hysteresis does not apply to {rule.kind}; leave it 0")
    elif rule.kind is not AlertKind.PRICE_BELOW and hysteresis >= rule.threshold:
        # Re-arming needs the value to drop below threshold - hysteresis;
        # these values never go below 0, so the rule would fire only once.
        raise ValueError(
            f"hysteresis ({hysteresis}) must be smaller than threshold ({rule.threshold})"
        )


def _check_target(rule: AlertRule) -> None:
    if rule.kind is not AlertKind.DRIFT:
        if rule.target is not None:
            raise ValueError(f"target only applies to drift, not {rule.kind}")
        return
    if not rule.target:
        raise ValueError("drift needs a target allocation (symbol -> percent)")
    for symbol, percent in rule.target.items():
        if not 0 <= percent <= HUNDRED:
            raise ValueError(f"drift target for {symbol} must be within 0..100, got {percent}")
    total = sum(rule.target.values(), Decimal(0))
    if total != HUNDRED:
        raise ValueError(f"drift target must sum to 100, got {total}")


def one_line(exc: ValidationError) -> str:
    """``field: problem; field: problem`` from a pydantic error."""
    parts = []
    for error in exc.errors():
        message = str(error.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def parse_rule(data: Any) -> AlertRule:
    """A validated rule from a mapping or JSON bytes/str; raises
    ``RuleInvalid`` with a one-line message."""
    try:
        if isinstance(data, bytes | str):
            return AlertRule.model_validate_json(data)
        return AlertRule.model_validate(data)
    except ValidationError as exc:
        raise RuleInvalid(one_line(exc)) from exc


def encode_rule(rule: AlertRule) -> bytes:
    """The rule as compact JSON (decimals as strings)."""
    return orjson.dumps(rule.model_dump(mode="json"))


def decode_rule_record(
    key: bytes | str | None, value: bytes | None
) -> tuple[str, AlertRule | None]:
    """An ``alerts.rules`` record -> (rule_id, rule); rule is None for a
    tombstone (the caller removes the rule). Raises ``RuleInvalid`` for a bad
    value or a key that disagrees with the value's rule_id."""
    rule_id = key.decode() if isinstance(key, bytes) else key
    if value is None:
        if not rule_id:
            raise RuleInvalid("tombstone without a key")
        return rule_id, None
    rule = parse_rule(value)
    if rule_id is not None and rule_id != rule.rule_id:
        raise RuleInvalid(f"record key {rule_id!r} differs from rule_id {rule.rule_id!r}")
    return rule.rule_id, rule


class Alert(BaseModel):
    """``portfolio.alerts`` (key: user_id): one firing of one rule.

    ``alert_id`` is deterministic (rule, version, crossing), so consumers
    de-duplicate replays by it. ``observed`` is the value that crossed, in
    the rule's threshold units (None for events without one).
    ``triggered_at`` is the event time of the observation that crossed.
    """

    model_config = ConfigDict(frozen=True)

    alert_id: str = Field(min_length=1, max_length=64)
    rule_id: Identifier
    rule_version: int = Field(ge=1)
    user_id: Identifier
    portfolio_id: Identifier | None = None
    symbol: Symbol | None = None
    kind: AlertKind
    observed: ExactDecimal | None = None
    threshold: ExactDecimal
    message: str
    triggered_at: UtcDatetime
    schema_version: int = SCHEMA_VERSION


def alert_record(alert: Alert) -> tuple[str, bytes]:
    """The ``portfolio.alerts`` Kafka record: (user_id, JSON)."""
    return alert.user_id, orjson.dumps(alert.model_dump(mode="json"))


class AlertRow(NamedTuple):
    """An alert as the stores keep it (Postgres ``alerts``, ClickHouse
    ``alerts``): the record's fields flat, the kind as text, event time in
    epoch ms and the whole record as JSON in ``payload``."""

    alert_id: str
    rule_id: str
    user_id: str
    portfolio_id: str | None
    symbol: str | None
    kind: str
    observed: Decimal | None
    threshold: Decimal | None
    message: str
    triggered_at_ms: int
    payload: str  # JSON document


def alert_row(alert: Alert) -> AlertRow:
    a = alert
    return AlertRow(
        a.alert_id,
        a.rule_id,
        a.user_id,
        a.portfolio_id,
        a.symbol,
        a.kind.value,
        a.observed,
        a.threshold,
        a.message,
        datetime_to_ms(a.triggered_at),
        a.model_dump_json(),
    )
