"""Shared scaffolding for the alert tests (no tests here): rules, a scripted-event runner."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from flows.alerts import RuleBook
from schemas.alerts import Alert, AlertRule, parse_rule
from schemas.common import datetime_to_ms

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
D = Decimal

Event = tuple[Any, ...]


def mk(rule_id: str, kind: str, threshold: object, **fields: object) -> AlertRule:
    return parse_rule(
        {"rule_id": rule_id, "user_id": "u1", "kind": kind, "threshold": threshold, **fields}
    )


def apply(book: RuleBook, event: Event) -> list[Alert]:
    """Events: ("price", symbol, price, ts) | ("val", pid, value, weights, ts) |
    ("div", pid, txn_id, amount, ts, symbol) | ("wm", ts) | ("rule", AlertRule) |
    ("remove", rule_id)."""
    match event:
        case ("price", symbol, price, ts):
            return book.on_price(symbol, D(price), ts)
        case ("val", pid, value, weights, ts):
            return book.on_valuation(pid, D(value), {k: D(v) for k, v in weights.items()}, ts)
        case ("div", pid, txn_id, amount, ts, symbol):
            return book.on_dividend(pid, txn_id, D(amount), ts, symbol=symbol)
        case ("wm", ts):
            return book.on_watermark(ts)
        case ("rule", rule):
            book.upsert(rule)
            return []
        case ("remove", rule_id):
            book.remove(rule_id)
            return []
    raise AssertionError(f"unknown event {event!r}")


def run(book: RuleBook, events: Iterable[Event]) -> list[Alert]:
    alerts: list[Alert] = []
    for event in events:
        alerts.extend(apply(book, event))
    for alert in alerts:  # the engine builds alerts unvalidated: they must pass validation
        assert Alert.model_validate_json(alert.model_dump_json()) == alert
    return alerts


def price_steps(symbol: str, values: Sequence[object], step_ms: int = 1_000) -> list[Event]:
    """One price a step apart, starting at T0 + step."""
    return [("price", symbol, value, T0 + step_ms * (i + 1)) for i, value in enumerate(values)]


def firing_steps(book: RuleBook, events: Sequence[Event]) -> list[tuple[int, str]]:
    """(event index, rule_id) for every alert, in order."""
    return [(i, alert.rule_id) for i, event in enumerate(events) for alert in apply(book, event)]


def book_with(*rules: AlertRule) -> RuleBook:
    book = RuleBook()
    for rule in rules:
        book.upsert(rule)
    return book


def ms(alert: Alert) -> int:
    return datetime_to_ms(alert.triggered_at)
