"""Alert engine: every kind fires exactly once per crossing; hysteresis,
cooldown, pause/resume/remove and redefinition semantics."""

from __future__ import annotations

from decimal import Decimal

from flows.alerts import RuleBook
from flows.alerts.inputs import observe_transaction, observe_valuation, subject_key
from schemas.alerts import AlertKind
from schemas.transactions import Transaction
from schemas.valuation import Valuation
from tests.test_alerts_support import (
    T0,
    Event,
    apply,
    book_with,
    firing_steps,
    mk,
    ms,
    price_steps,
    run,
)


def test_price_above_fires_once_per_crossing_with_hysteresis():
    book = book_with(mk("up", "price_above", "200.00", symbol="AAPL", hysteresis="1"))
    #        0      1        2      3        4        5      6      7
    values = ["199", "200.15", "201", "199.5", "198.9", "200", "250", "180"]
    events = price_steps("AAPL", values)
    alerts = run(book, events)
    assert [a.observed for a in alerts] == [Decimal("200.15"), Decimal("200")]
    first = alerts[0]
    assert first.message == "AAPL rose above 200.00 (200.15)"
    assert first.kind is AlertKind.PRICE_ABOVE
    assert (first.symbol, first.portfolio_id, first.user_id) == ("AAPL", None, "u1")
    assert first.threshold == Decimal("200.00")
    assert ms(first) == T0 + 2_000
    assert first.alert_id != alerts[1].alert_id


def test_price_below_mirrors_price_above():
    book = book_with(mk("down", "price_below", "150", symbol="MSFT", hysteresis="2"))
    events = price_steps("MSFT", ["151", "150", "149", "151.5", "152.5", "149.99", "140"])
    assert firing_steps(book, events) == [(1, "down"), (5, "down")]


def test_inclusive_threshold_and_zero_hysteresis_rearm():
    book = book_with(mk("up", "price_above", "10", symbol="X"))
    # 10 reaches the threshold; 9.99 re-arms (strictly back below); 10 again fires.
    events = price_steps("X", ["9", "10", "10", "9.99", "10"])
    assert firing_steps(book, events) == [(1, "up"), (4, "up")]


def test_pct_move_on_a_symbol_uses_the_window():
    rule = mk("move", "pct_move", "5", symbol="AAPL", window_ms=10_000, hysteresis="1")
    book = book_with(rule)
    # 1 s apart: 100 -> 105 is +5 % within 10 s (fires); the move stays above
    # 4 % while 100 is in the window; once it leaves (t=12 s) the rule re-arms.
    # 95 is -10.38 % from the window's high, 106 (fires); 100 is +5.26 % from 95
    # but the rule has not re-armed since.
    values = ["100", "102", "105", "106"] + ["105"] * 8 + ["104", "95", "100"]
    events = price_steps("AAPL", values)
    alerts = run(book, events)
    assert [a.message for a in alerts] == [
        "AAPL rose 5.00% within 10s (100 -> 105)",
        "AAPL fell 10.38% within 10s (106 -> 95)",
    ]
    assert alerts[0].observed == Decimal("5.000000")


def test_pct_move_on_a_portfolio():
    book = book_with(mk("pm", "pct_move", "3", portfolio_id="p1", window_ms=3_600_000))
    events: list[Event] = [
        ("val", "p1", value, {}, T0 + i * 60_000)
        for i, value in enumerate(["10000", "9900", "9701", "9650", "9800"])
    ]
    alerts = run(book, events)
    assert len(alerts) == 1
    assert alerts[0].message == "Portfolio p1 fell 3.50% within 1h (10000 -> 9650)"
    assert alerts[0].observed == Decimal("3.5")
    assert alerts[0].portfolio_id == "p1"
    assert alerts[0].symbol is None


def test_drawdown_from_running_peak():
    book = book_with(mk("dd", "drawdown", "10", portfolio_id="p1", hysteresis="5"))
    values = ["100", "120", "110", "108", "100", "113", "115", "103", "90"]
    events: list[Event] = [("val", "p1", v, {}, T0 + i) for i, v in enumerate(values)]
    # peak 120: 108 is -10 % (fires); 113 is -5.83 % (still within hysteresis);
    # 115 is -4.17 % (re-arms); 103 is -14.17 % (fires); 90 stays disarmed.
    assert firing_steps(book, events) == [(3, "dd"), (7, "dd")]
    book2 = book_with(mk("dd", "drawdown", "10", portfolio_id="p1", hysteresis="5"))
    alerts = run(book2, events)
    assert alerts[0].message == "Portfolio p1 is 10.00% below its peak of 120 (108)"


def test_concentration_per_position():
    book = book_with(
        mk("any", "concentration", "30", portfolio_id="p1"),
        mk("msft", "concentration", "40", portfolio_id="p1", symbol="MSFT"),
    )
    weights = [
        {"AAPL": "0.25", "MSFT": "0.35"},  # MSFT past 30 (any)
        {"AAPL": "0.31", "MSFT": "0.35"},  # AAPL crosses 30 (any)
        {"AAPL": "0.36", "MSFT": "0.36"},  # both still past 30: nothing
        {"MSFT": "0.45"},  # AAPL sold: re-arms; MSFT crosses 40 (msft)
        {"AAPL": "0.31", "MSFT": "0.45"},  # AAPL crosses again (any)
    ]
    events: list[Event] = [("val", "p1", "1000", w, T0 + i) for i, w in enumerate(weights)]
    steps = firing_steps(book, events)
    assert steps == [(0, "any"), (1, "any"), (3, "msft"), (4, "any")]
    fresh = book_with(mk("any", "concentration", "30", portfolio_id="p1"))
    alerts = run(fresh, events[:2])
    assert sorted(a.symbol or "" for a in alerts) == ["AAPL", "MSFT"]
    aapl = next(a for a in alerts if a.symbol == "AAPL")
    assert aapl.message == "AAPL is 31.00% of portfolio p1 (limit 30%)"
    assert len({a.alert_id for a in alerts}) == 2


def test_drift_against_target_allocation():
    rule = mk("drift", "drift", "5", portfolio_id="p1", target={"AAPL": 60, "BND": 40})
    book = book_with(rule)
    weights = [
        {"AAPL": "0.62", "BND": "0.38"},
        {"AAPL": "0.66", "BND": "0.34"},  # 6 points: fires
        {"AAPL": "0.70", "BND": "0.30"},
        {"AAPL": "0.59", "BND": "0.41"},  # re-arms
        {"AAPL": "0.50", "BND": "0.30", "GLD": "0.20"},  # GLD 20 points off a 0 target
    ]
    events: list[Event] = [("val", "p1", "1000", w, T0 + i) for i, w in enumerate(weights)]
    alerts = run(book, events)
    assert [a.observed for a in alerts] == [Decimal("6.000000"), Decimal("20.000000")]
    assert alerts[0].message == (
        "Portfolio p1 drifted 6.00 points from its target allocation (AAPL at 66.00% vs 60% target)"
    )
    assert alerts[1].symbol == "GLD"


def test_goal_reached_once_then_rearms_below_hysteresis():
    book = book_with(mk("goal", "goal_reached", "100000", portfolio_id="p1", hysteresis="5000"))
    values = ["90000", "100000.5", "98000", "101000", "94000", "100000"]
    events: list[Event] = [("val", "p1", v, {}, T0 + i) for i, v in enumerate(values)]
    alerts = run(book, events)
    assert [ms(a) - T0 for a in alerts] == [1, 5]
    assert alerts[0].message == "Portfolio p1 reached its goal of 100000 (100000.5)"


def test_dividend_received_once_per_transaction():
    book = book_with(
        mk("any", "dividend_received", "0", portfolio_id="p1"),
        mk("big", "dividend_received", "100", portfolio_id="p1"),
        mk("ko", "dividend_received", "0", portfolio_id="p1", symbol="KO"),
    )
    events: list[Event] = [
        ("div", "p1", "t1", "12.34", T0, "AAPL"),
        ("div", "p1", "t1", "12.34", T0, "AAPL"),  # redelivered
        ("div", "p1", "t2", "150", T0 + 1, "KO"),
        ("div", "p2", "t3", "150", T0 + 2, "KO"),  # other portfolio
    ]
    assert firing_steps(book, events) == [(0, "any"), (2, "any"), (2, "big"), (2, "ko")]
    assert book.ignored == 1
    txn = Transaction.model_validate(
        {
            "txn_id": "t9",
            "portfolio_id": "p1",
            "user_id": "u1",
            "type": "DIVIDEND",
            "symbol": "KO",
            "amount": "3.5",
            "currency": "EUR",
            "executed_at": "2026-01-02T00:00:00Z",
        }
    )
    alerts = observe_transaction(book, txn)
    assert [a.rule_id for a in alerts] == ["any", "ko"]
    assert alerts[0].message == "Portfolio p1 received a dividend of 3.5 EUR from KO"


def test_feed_stale_on_watermarks():
    book = book_with(mk("stale", "feed_stale", "60", symbol="AAPL"))
    events: list[Event] = [
        ("wm", T0),  # never priced: silence counts from here
        ("wm", T0 + 59_000),
        ("wm", T0 + 60_000),  # fires (60 s)
        ("wm", T0 + 120_000),  # still stale: no repeat
        ("price", "AAPL", "10", T0 + 130_000),  # re-arms
        ("wm", T0 + 189_000),
        ("wm", T0 + 190_500),  # 60.5 s since the price: fires
        ("wm", T0 + 100_000),  # older watermark: ignored
    ]
    alerts = run(book, events)
    assert [a.observed for a in alerts] == [Decimal("60"), Decimal("60.5")]
    assert alerts[1].message == "No price for AAPL for 60.5s (limit 60s)"
    # The silence's start identifies the alert, not the watermark that saw it.
    late = book_with(mk("stale", "feed_stale", "60", symbol="AAPL"))
    shifted = [e for e in events if e != ("wm", T0 + 190_500)] + [("wm", T0 + 195_000)]
    assert run(late, shifted)[1].alert_id == alerts[1].alert_id


def test_cooldown_swallows_crossings_in_event_time():
    book = book_with(mk("up", "price_above", "10", symbol="X", cooldown_ms=10_000))
    #                      1 s   2 s   3 s   4 s  5 s    ... 12 s  13 s
    events = price_steps("X", ["11", "9", "11", "9", "9", "9", "9", "9", "9", "9", "9", "12"])
    assert firing_steps(book, events) == [(0, "up"), (11, "up")]
    assert book.suppressed == 1


def test_pause_suppresses_and_resume_rearms_from_current_value():
    rule = mk("up", "price_above", "10", symbol="X")
    book = book_with(rule)
    paused = rule.model_copy(update={"active": False, "version": 2})
    resumed = rule.model_copy(update={"active": True, "version": 3})
    events: list[Event] = [
        ("price", "X", "9", T0 + 1),
        ("rule", paused),
        ("price", "X", "11", T0 + 2),  # crossing while paused: never fires
        ("rule", resumed),  # value is past the threshold: starts disarmed
        ("price", "X", "12", T0 + 3),
        ("price", "X", "9", T0 + 4),  # re-arms
        ("price", "X", "11", T0 + 5),  # fires, with the resumed version
    ]
    alerts = run(book, events)
    assert [(ms(a) - T0, a.rule_version) for a in alerts] == [(5, 3)]


def test_resume_below_threshold_is_armed():
    rule = mk("dd", "drawdown", "10", portfolio_id="p1")
    events: list[Event] = [
        ("val", "p1", "100", {}, T0 + 1),
        ("rule", rule.model_copy(update={"active": False, "version": 2})),
        ("val", "p1", "120", {}, T0 + 2),  # paused rules keep tracking the peak
        ("rule", rule.model_copy(update={"version": 3})),
        ("val", "p1", "107", {}, T0 + 3),  # -10.8 % from 120
    ]
    alerts = run(book_with(rule), events)
    assert len(alerts) == 1
    assert "peak of 120" in alerts[0].message


def test_remove_and_redefine():
    rule = mk("up", "price_above", "10", symbol="X")
    book = book_with(rule)
    assert run(book, [("price", "X", "11", T0 + 1)])
    # Changing the threshold restarts the rule armed: 11 is past 10.5 -> fires.
    book.upsert(mk("up", "price_above", "10.5", symbol="X", version=2))
    assert [a.threshold for a in run(book, [("price", "X", "11", T0 + 2)])] == [Decimal("10.5")]
    # An older version is ignored; the same version again changes nothing.
    book.upsert(mk("up", "price_above", "1", symbol="X", version=1))
    book.upsert(mk("up", "price_above", "10.5", symbol="X", version=2))
    assert book.get("up").threshold == Decimal("10.5")  # type: ignore[union-attr]
    assert run(book, [("price", "X", "12", T0 + 3)]) == []
    assert book.remove("up") is True
    assert book.remove("up") is False
    assert len(book) == 0
    assert run(book, price_steps("X", ["1", "100"])) == []


def test_new_rule_already_past_threshold_fires_on_first_observation():
    book = RuleBook()
    run(book, [("price", "X", "50", T0)])
    book.upsert(mk("up", "price_above", "10", symbol="X"))
    alerts = run(book, [("price", "X", "51", T0 + 1), ("price", "X", "52", T0 + 2)])
    assert len(alerts) == 1


def test_old_and_duplicate_observations_are_ignored():
    book = book_with(mk("up", "price_above", "10", symbol="X"))
    events: list[Event] = [
        ("price", "X", "9", T0 + 5),
        ("price", "X", "11", T0 + 5),  # same event time: a duplicate version
        ("price", "X", "11", T0 + 4),  # older: a replay
        ("price", "X", "11", T0 + 6),
    ]
    assert firing_steps(book, events) == [(3, "up")]
    assert book.ignored == 2


def test_observe_valuation_uses_market_value_and_fraction_weights():
    book = book_with(
        mk("goal", "goal_reached", "1000", portfolio_id="p1"),
        mk("conc", "concentration", "50", portfolio_id="p1"),
    )
    position = {"quantity": "3", "currency": "USD"}
    valuation = Valuation.model_validate(
        {
            "portfolio_id": "p1",
            "user_id": "u1",
            "window_start": T0,
            "window_end": T0 + 1000,
            "market_value": "1000",
            "holdings_value": "900",
            "cash": "100",
            "cost_basis": "800",
            "unrealized_pnl": "100",
            "realized_pnl": "0",
            "positions": [
                {**position, "symbol": "AAPL", "price": "200", "weight": "0.6"},
                {**position, "symbol": "BND", "price": "100", "weight": "0.4"},
            ],
            "version": T0 + 1000,
        }
    )
    alerts = observe_valuation(book, valuation)
    assert {(a.rule_id, a.symbol) for a in alerts} == {("goal", None), ("conc", "AAPL")}
    assert apply(book, ("val", "p1", "2000", {}, T0 + 1000)) == []  # same version: ignored


def test_subject_key_routes_each_rule_to_its_series():
    assert subject_key(mk("a", "price_above", "1", symbol="aapl")) == "symbol:AAPL"
    assert subject_key(mk("b", "pct_move", "1", symbol="X", window_ms=1)) == "symbol:X"
    assert subject_key(mk("c", "pct_move", "1", portfolio_id="p1", window_ms=1)) == "portfolio:p1"
    assert subject_key(mk("d", "concentration", "1", portfolio_id="p1", symbol="X")) == (
        "portfolio:p1"
    )


def test_a_rule_added_or_resumed_between_prices_is_seen_by_the_next_price():
    """A symbol's prices skip its ladders while they stay inside the band
    no rule fires or re-arms in; a new or resumed rule narrows that band."""
    book = book_with(mk("far", "price_above", "110", symbol="A"))
    assert book.on_price("A", Decimal(100), T0) == []
    book.upsert(mk("near", "price_above", "105", symbol="A"))
    assert [a.rule_id for a in book.on_price("A", Decimal(106), T0 + 1)] == ["near"]
    low = mk("low", "price_below", "95", symbol="A", active=False)
    book.upsert(low)
    assert book.on_price("A", Decimal(100), T0 + 2) == []
    book.upsert(low.model_copy(update={"active": True, "version": 2}))
    assert [a.rule_id for a in book.on_price("A", Decimal(94), T0 + 3)] == ["low"]


def test_a_pct_move_rule_added_or_resumed_is_seen_by_the_next_price():
    """A window keeps its pre-check bounds between prices; a new or resumed
    rule with a lower threshold on the same window must not be missed."""
    late = mk("late", "pct_move", "1", symbol="A", window_ms=60_000, active=False)
    for change in (
        mk("tight", "pct_move", "1", symbol="A", window_ms=60_000),
        late.model_copy(update={"active": True, "version": 2}),
    ):
        book = book_with(mk("wide", "pct_move", "5", symbol="A", window_ms=60_000), late)
        for n, price in enumerate(["100", "100.5", "100.2"]):
            assert book.on_price("A", Decimal(price), T0 + n * 1_000) == []
        book.upsert(change)
        fired = book.on_price("A", Decimal("101.5"), T0 + 3_000)
        assert [a.rule_id for a in fired] == [change.rule_id]
