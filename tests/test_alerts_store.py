"""The alert rule store against a real Postgres database (fresh per test)."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from flows.alerts import RuleBook
from schemas.alerts import decode_rule_record
from sinks.errors import SinkRejected, SinkUnavailable
from sinks.postgres.alert_rules import RuleExists, RuleNotFound, RuleStore, rule_message
from tests.test_alerts_support import mk


def test_add_get_list_round_trip(pg_dsn: str):
    store = RuleStore(pg_dsn)
    drift = mk(
        "r-drift",
        "drift",
        "5.5",
        portfolio_id="p1",
        target={"AAPL": "60", "BND": "40.0"},
        cooldown_ms=60_000,
        version=9,  # the store owns versions: a new rule starts at 1
    )
    added = store.add(drift)
    assert added == drift.model_copy(update={"version": 1})
    assert store.get("r-drift") == added
    price = store.add(mk("r-price", "price_above", "200.00", symbol="AAPL", hysteresis="0.5"))
    assert price.threshold == Decimal("200")
    other = store.add(
        mk("r-other", "goal_reached", "1000", portfolio_id="p2").model_copy(
            update={"user_id": "u2"}
        )
    )
    assert [r.rule_id for r in store.list()] == ["r-drift", "r-other", "r-price"]
    assert store.list(user_id="u2") == [other]
    assert store.list(user_id="nobody") == []


def test_set_active_update_remove_bump_versions(pg_dsn: str):
    store = RuleStore(pg_dsn)
    store.add(mk("r1", "price_above", "10", symbol="X"))
    paused = store.set_active("r1", False)
    assert (paused.active, paused.version) == (False, 2)
    assert store.set_active("r1", False).version == 2  # no change, no new version
    assert store.set_active("r1", True).version == 3
    changed = store.update(mk("r1", "price_above", "12", symbol="X"))
    assert (changed.threshold, changed.version) == (Decimal("12"), 4)
    removed = store.remove("r1")
    assert removed == changed
    with pytest.raises(RuleNotFound, match="alert rule 'r1' not found"):
        store.get("r1")
    for action in (
        lambda: store.remove("r1"),
        lambda: store.set_active("r1", True),
        lambda: store.update(mk("r1", "price_above", "1", symbol="X")),
    ):
        with pytest.raises(RuleNotFound):
            action()


def test_duplicate_add_is_rule_exists(pg_dsn: str):
    store = RuleStore(pg_dsn)
    store.add(mk("r1", "price_above", "10", symbol="X"))
    with pytest.raises(RuleExists, match="already exists") as info:
        store.add(mk("r1", "price_below", "5", symbol="Y"))
    assert isinstance(info.value, SinkRejected)
    assert store.get("r1").kind == "price_above"


def test_invalid_stored_row_is_refused(pg_dsn: str):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alert_rules (rule_id, user_id, symbol, kind, threshold)"
            " VALUES ('bad', 'u1', 'X', 'pct_move', 5)"
        )
    with pytest.raises(SinkRejected, match="pct_move needs window_ms"):
        RuleStore(pg_dsn).get("bad")


def test_unreachable_postgres_is_sink_unavailable():
    store = RuleStore("postgresql://postgres@127.0.0.1:1/nothing", connect_timeout_s=1)
    with pytest.raises(SinkUnavailable, match="postgres"):
        store.list()


def test_store_changes_drive_the_engine_through_kafka_records(pg_dsn: str):
    """What the integrator wires: store change -> alerts.rules record -> engine."""
    store = RuleStore(pg_dsn)
    book = RuleBook()

    def publish(record: tuple[str, bytes | None]) -> None:
        rule_id, rule = decode_rule_record(*record)
        if rule is None:
            book.remove(rule_id)
        else:
            book.upsert(rule)

    rule = store.add(mk("r1", "price_above", "10", symbol="X"))
    publish(rule_message(rule))
    assert len(book.on_price("X", Decimal(11), 1)) == 1
    publish(rule_message(store.set_active("r1", False)))
    assert book.get("r1").active is False  # type: ignore[union-attr]
    publish(rule_message(store.remove("r1"), removed=True))
    assert len(book) == 0
