"""Alert records: deterministic ids and human-readable messages.

``alert_id`` = first 32 hex digits of SHA-256 over (rule_id, rule version,
crossing identity). The identity is the event time of the observation that
crossed (plus the position's symbol for per-position rules), the
transaction id for dividends, and the start of the silence for stale feeds,
so the same crossing gets the same id after a replay or a restart.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

from flows.alerts.numbers import duration, plain, show_pct
from flows.alerts.window import Move
from schemas.alerts import Alert, AlertRule
from schemas.common import SCHEMA_VERSION, ms_to_datetime


def alert_id(rule: AlertRule, identity: str) -> str:
    raw = f"{rule.rule_id}\x1f{rule.version}\x1f{identity}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def build(
    rule: AlertRule,
    ts_ms: int,
    identity: str,
    observed: Decimal | None,
    message: str,
    symbol: str | None = None,
) -> Alert:
    # Every field comes from a validated rule or an exact engine value:
    # constructed, not validated again (the alert tests validate every alert).
    return Alert.model_construct(
        alert_id=alert_id(rule, identity),
        rule_id=rule.rule_id,
        rule_version=rule.version,
        user_id=rule.user_id,
        portfolio_id=rule.portfolio_id,
        symbol=symbol if symbol is not None else rule.symbol,
        kind=rule.kind,
        observed=observed,
        threshold=rule.threshold,
        message=message,
        triggered_at=ms_to_datetime(ts_ms),
        schema_version=SCHEMA_VERSION,
    )


def _subject(rule: AlertRule) -> str:
    return rule.symbol if rule.symbol is not None else f"Portfolio {rule.portfolio_id}"


def price_crossing(rule: AlertRule, price: Decimal, ts_ms: int) -> Alert:
    verb = "rose above" if rule.kind == "price_above" else "fell below"
    text = f"{rule.symbol} {verb} {plain(rule.threshold)} ({plain(price)})"
    return build(rule, ts_ms, str(ts_ms), price, text)


def pct_move(rule: AlertRule, move: Move, value: Decimal, ts_ms: int) -> Alert:
    verb = "rose" if move.rising else "fell"
    window = duration(rule.window_ms or 0)
    text = (
        f"{_subject(rule)} {verb} {show_pct(move.size)}% within {window} "
        f"({plain(move.reference)} -> {plain(value)})"
    )
    return build(rule, ts_ms, str(ts_ms), move.size, text)


def goal_reached(rule: AlertRule, value: Decimal, ts_ms: int) -> Alert:
    text = f"Portfolio {rule.portfolio_id} reached its goal of {plain(rule.threshold)} "
    return build(rule, ts_ms, str(ts_ms), value, text + f"({plain(value)})")


def drawdown(rule: AlertRule, size: Decimal, peak: Decimal, value: Decimal, ts_ms: int) -> Alert:
    text = (
        f"Portfolio {rule.portfolio_id} is {show_pct(size)}% below its peak of "
        f"{plain(peak)} ({plain(value)})"
    )
    return build(rule, ts_ms, str(ts_ms), size, text)


def concentration(rule: AlertRule, symbol: str, weight: Decimal, ts_ms: int) -> Alert:
    text = (
        f"{symbol} is {show_pct(weight)}% of portfolio {rule.portfolio_id} "
        f"(limit {plain(rule.threshold)}%)"
    )
    return build(rule, ts_ms, f"{ts_ms}:{symbol}", weight, text, symbol=symbol)


def drift(
    rule: AlertRule, size: Decimal, symbol: str, actual: Decimal, target: Decimal, ts_ms: int
) -> Alert:
    text = (
        f"Portfolio {rule.portfolio_id} drifted {show_pct(size)} points from its target "
        f"allocation ({symbol} at {show_pct(actual)}% vs {plain(target)}% target)"
    )
    return build(rule, ts_ms, str(ts_ms), size, text, symbol=symbol)


def dividend(
    rule: AlertRule, txn_id: str, symbol: str | None, amount: Decimal, currency: str, ts_ms: int
) -> Alert:
    source = f" from {symbol}" if symbol else ""
    text = (
        f"Portfolio {rule.portfolio_id} received a dividend of {plain(amount)} {currency}{source}"
    )
    return build(rule, ts_ms, f"txn:{txn_id}", amount, text, symbol=symbol)


def feed_stale(rule: AlertRule, since_ms: int, staleness: Decimal, ts_ms: int) -> Alert:
    text = f"No price for {rule.symbol} for {plain(staleness)}s (limit {plain(rule.threshold)}s)"
    return build(rule, ts_ms, f"stale:{since_ms}", staleness, text)
