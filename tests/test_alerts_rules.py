"""Alert rule contract: validation messages, JSON and Kafka record round trips."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from schemas.alerts import (
    Alert,
    AlertKind,
    AlertRule,
    RuleInvalid,
    alert_record,
    decode_rule_record,
    encode_rule,
    parse_rule,
)
from sinks.postgres.alert_rules import rule_message

BASE = {"rule_id": "r1", "user_id": "u1"}


def rule(**fields: object) -> AlertRule:
    return parse_rule({**BASE, **fields})


def error_of(**fields: object) -> str:
    with pytest.raises(RuleInvalid) as info:
        rule(**fields)
    message = str(info.value)
    assert "\n" not in message
    return message


VALID = [
    {"kind": "price_above", "symbol": "aapl", "threshold": "200.00"},
    {"kind": "price_below", "symbol": "AAPL", "threshold": 150, "hysteresis": "500"},
    {"kind": "pct_move", "symbol": "AAPL", "threshold": "5", "window_ms": 60_000},
    {"kind": "pct_move", "portfolio_id": "p1", "threshold": "2.5", "window_ms": 3_600_000},
    {"kind": "drawdown", "portfolio_id": "p1", "threshold": "10", "hysteresis": "2"},
    {"kind": "concentration", "portfolio_id": "p1", "threshold": "30"},
    {"kind": "concentration", "portfolio_id": "p1", "symbol": "AAPL", "threshold": "30"},
    {"kind": "drift", "portfolio_id": "p1", "threshold": "5", "target": {"AAPL": 60, "BND": 40}},
    {"kind": "goal_reached", "portfolio_id": "p1", "threshold": "100000", "cooldown_ms": 0},
    {"kind": "dividend_received", "portfolio_id": "p1", "threshold": "0"},
    {"kind": "feed_stale", "symbol": "AAPL", "threshold": "60"},
]


@pytest.mark.parametrize("fields", VALID)
def test_valid_rules_round_trip_through_json_and_kafka(fields: dict[str, object]):
    original = rule(**fields)
    assert parse_rule(encode_rule(original)) == original
    key, value = rule_message(original)
    assert key == "r1"
    assert value is not None
    assert decode_rule_record(key.encode(), value) == ("r1", original)


def test_symbols_normalised_and_decimals_exact():
    parsed = rule(kind="price_above", symbol=" aapl ", threshold="200.10")
    assert parsed.symbol == "AAPL"
    assert parsed.threshold == Decimal("200.10")
    assert orjson.loads(encode_rule(parsed))["threshold"] == "200.10"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"kind": "pct_move", "symbol": "A", "threshold": 5}, "pct_move needs window_ms"),
        (
            {"kind": "pct_move", "symbol": "A", "threshold": 5, "window_ms": 0},
            "window_ms must be > 0, got 0",
        ),
        (
            {
                "kind": "pct_move",
                "symbol": "A",
                "portfolio_id": "p",
                "threshold": 5,
                "window_ms": 1,
            },
            "pct_move needs exactly one of symbol or portfolio_id",
        ),
        ({"kind": "price_above", "threshold": 1}, "price_above needs a symbol"),
        ({"kind": "feed_stale", "threshold": 1}, "feed_stale needs a symbol"),
        (
            {"kind": "price_below", "symbol": "A", "portfolio_id": "p", "threshold": 1},
            "price_below watches a symbol; portfolio_id must be empty",
        ),
        ({"kind": "drawdown", "threshold": 5}, "drawdown needs a portfolio_id"),
        (
            {"kind": "goal_reached", "portfolio_id": "p", "symbol": "A", "threshold": 5},
            "goal_reached watches a whole portfolio; symbol must be empty",
        ),
        ({"kind": "price_above", "symbol": "A", "threshold": 0}, "threshold must be > 0, got 0"),
        (
            {"kind": "goal_reached", "portfolio_id": "p", "threshold": "-5"},
            "goal_reached threshold must be > 0, got -5",
        ),
        (
            {"kind": "dividend_received", "portfolio_id": "p", "threshold": "-1"},
            "dividend_received threshold must be >= 0, got -1",
        ),
        (
            {"kind": "concentration", "portfolio_id": "p", "threshold": 101},
            "concentration threshold is a percentage and must be <= 100, got 101",
        ),
        (
            {"kind": "price_above", "symbol": "A", "threshold": 1, "cooldown_ms": -1},
            "cooldown_ms must be >= 0, got -1",
        ),
        (
            {"kind": "price_above", "symbol": "A", "threshold": 1, "hysteresis": "-0.5"},
            "hysteresis must be >= 0, got -0.5",
        ),
        (
            {"kind": "price_above", "symbol": "A", "threshold": 10, "hysteresis": 10},
            "hysteresis (10) must be smaller than threshold (10)",
        ),
        (
            {"kind": "feed_stale", "symbol": "A", "threshold": 60, "hysteresis": 1},
            "hysteresis does not apply to feed_stale; leave it 0",
        ),
        (
            {"kind": "price_above", "symbol": "A", "threshold": 1, "window_ms": 5},
            "window_ms only applies to pct_move, not price_above",
        ),
        ({"kind": "drift", "portfolio_id": "p", "threshold": 5}, "drift needs a target allocation"),
        (
            {"kind": "drift", "portfolio_id": "p", "threshold": 5, "target": {"A": 60, "B": 30}},
            "drift target must sum to 100, got 90",
        ),
        (
            {"kind": "drift", "portfolio_id": "p", "threshold": 5, "target": {"A": 120, "B": -20}},
            "drift target for A must be within 0..100, got 120",
        ),
        (
            {"kind": "goal_reached", "portfolio_id": "p", "threshold": 5, "target": {"A": 100}},
            "target only applies to drift, not goal_reached",
        ),
        ({"kind": "price_above", "symbol": "BAD SYMBOL", "threshold": 1}, "symbol: "),
        ({"kind": "price_above", "symbol": "A", "threshold": "abc"}, "threshold: "),
        ({"kind": "price_above", "symbol": "A", "threshold": "NaN"}, "must be finite"),
        ({"kind": "price_sideways", "symbol": "A", "threshold": 1}, "kind: "),
        ({"kind": "price_above", "symbol": "A", "threshold": 1, "cooldown_ms": "5"}, "cooldown_ms"),
        ({"kind": "price_above", "symbol": "A", "threshold": 1, "colldown_ms": 5}, "colldown_ms"),
    ],
)
def test_validation_messages(fields: dict[str, object], expected: str):
    assert expected in error_of(**fields)


def test_hysteresis_may_exceed_threshold_only_for_price_below():
    assert rule(kind="price_below", symbol="A", threshold=1, hysteresis=5).hysteresis == 5


def test_missing_identity_is_reported_by_field():
    with pytest.raises(RuleInvalid, match="rule_id: Field required"):
        parse_rule({"user_id": "u", "kind": "price_above", "symbol": "A", "threshold": 1})


def test_tombstone_and_key_mismatch():
    assert decode_rule_record(b"r9", None) == ("r9", None)
    with pytest.raises(RuleInvalid, match="tombstone without a key"):
        decode_rule_record(None, None)
    value = encode_rule(rule(kind="price_above", symbol="A", threshold=1))
    with pytest.raises(RuleInvalid, match="differs from rule_id"):
        decode_rule_record("other", value)
    with pytest.raises(RuleInvalid):
        decode_rule_record("r1", b"{not json")
    removed = rule(kind="price_above", symbol="A", threshold=1)
    assert rule_message(removed, removed=True) == ("r1", None)


def test_definition_ignores_active_and_version():
    base = rule(kind="price_above", symbol="A", threshold=1)
    paused = base.model_copy(update={"active": False, "version": 7})
    assert paused.definition() == base.definition()
    assert rule(kind="price_above", symbol="A", threshold=2).definition() != base.definition()


def test_alert_record_serialises_decimals_as_strings():
    alert = Alert.model_validate(
        {
            "alert_id": "abc",
            "rule_id": "r1",
            "rule_version": 1,
            "user_id": "u1",
            "symbol": "AAPL",
            "kind": AlertKind.PRICE_ABOVE,
            "observed": Decimal("200.15"),
            "threshold": Decimal("200.00"),
            "message": "AAPL rose above 200.00 (200.15)",
            "triggered_at": 1_767_225_600_000,
        }
    )
    key, value = alert_record(alert)
    doc = orjson.loads(value)
    assert key == "u1"
    assert doc["observed"] == "200.15"
    assert doc["threshold"] == "200.00"
    assert doc["triggered_at"] == "2026-01-01T00:00:00Z"
    assert doc["schema_version"] == 1
    assert Alert.model_validate_json(value) == alert
