"""Dashboard card computations, checked against numbers worked out by hand
and against the reference return functions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.alerts.stream import rules_end
from flows.dashboard.assets import asset_class
from flows.dashboard.board import UserBoard, card_json
from flows.dashboard.books import PortfolioBook
from flows.dashboard.cards import Holding, Move, allocation_body, movers_body
from flows.dashboard.compute import Caches
from flows.dashboard.income import income_body
from flows.dashboard.series import date_day, live_returns, period_bases
from flows.dashboard.shard import DashboardShard, Router, ShardInput
from flows.dashboard.targets import DriftTarget, drift_rows, effective
from flows.portfolio.fast_valuation import Valuer
from flows.portfolio.ledger import PortfolioState
from flows.portfolio.returns import price_return, twr
from flows.valuation.shard import AppliedTransaction, position_row
from schemas.alerts import AlertRule
from schemas.transactions import Transaction

D = Decimal
SIX = D("0.000001")


def day(text: str) -> int:
    return date_day(date.fromisoformat(text))


def test_returns_against_the_benchmark_by_hand():
    # base close 1000 on the 1m start; +10 %; a 500 deposit then +3.125 %;
    # today +10 %: (1100/1000) * (1650/(1100+500)) * (1815/1650) = 1.2478125
    closes = {day("2024-02-15"): D(1000), day("2024-02-20"): D(1100), day("2024-03-01"): D(1650)}
    flows = {day("2024-03-01"): D(500)}
    bench = {day("2024-02-15"): D(400), day("2024-03-14"): D(410)}
    today = day("2024-03-15")
    bases = period_bases(closes, flows, today, bench)
    out = {r.period: r for r in live_returns(bases, D(1815), D(0), (today, D(420)), SIX)}
    assert out["1m"].twr == D("0.247812")  # 0.2478125, half-even
    assert out["1m"].benchmark == D("0.05")
    assert out["1m"].outperformance == D("0.197812")  # 0.1978125
    # no close on or before the start of 3m, YTD and 1y: no number
    assert out["3m"].twr is None and out["ytd"].twr is None and out["1y"].twr is None
    assert out["3m"].benchmark is None


def test_a_flow_today_counts_as_capital_at_risk():
    closes = {day("2024-01-01"): D(1000)}
    today = day("2024-01-02")
    bases = period_bases(closes, {}, today, None)
    # 500 deposited today; value 1650 = (1000 + 500) * 1.1
    [one_month] = [r for r in live_returns(bases, D(1650), D(500), None, SIX) if r.period == "1m"]
    assert one_month.twr is None  # the history is shorter than a month
    short = period_bases({day("2023-11-30"): D(1000)} | closes, {}, today, None)
    [one_month] = [r for r in live_returns(short, D(1650), D(500), None, SIX) if r.period == "1m"]
    assert one_month.twr == D("0.1")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(500, 2_000), min_size=2, max_size=40),
    st.dictionaries(st.integers(0, 45), st.integers(-300, 300), max_size=6),
    st.lists(st.integers(300, 500), min_size=2, max_size=40),
)
def test_live_returns_match_the_reference(values, flow_days, bench_prices):
    start = day("2023-12-20")
    closes = {start + i * 2: D(v) for i, v in enumerate(values)}
    flows = {start + d: D(a) for d, a in flow_days.items() if a}
    bench = {start + i * 2: D(p) for i, p in enumerate(bench_prices)}
    today = max(closes)
    bases = period_bases(closes, flows, today, bench)
    bench_now = max((d, p) for d, p in bench.items() if d <= today)
    live = live_returns(bases, closes[today], flows.get(today, D(0)), bench_now, SIX)
    as_dates = {date.fromordinal(date(1970, 1, 1).toordinal() + d): v for d, v in closes.items()}
    flow_dates = {date.fromordinal(date(1970, 1, 1).toordinal() + d): v for d, v in flows.items()}
    bench_dates = {date.fromordinal(date(1970, 1, 1).toordinal() + d): v for d, v in bench.items()}
    for r, b in zip(live, bases, strict=True):
        s = date.fromordinal(date(1970, 1, 1).toordinal() + b.start)
        e = date.fromordinal(date(1970, 1, 1).toordinal() + today)
        expected = twr(as_dates, flow_dates, s, e)
        assert r.twr == (None if expected is None else expected.quantize(SIX))
        expected_bench = price_return(bench_dates, s, e)
        assert r.benchmark == (None if expected_bench is None else expected_bench.quantize(SIX))


def test_allocation_by_symbol_class_and_currency():
    holdings = [
        Holding("AAPL", "USD", D(150), D(600)),
        Holding("SPY", "USD", D(500), D(300)),
        Holding("BTC-USD", "USD", D(50000), D(100)),
        Holding("SAP", "EUR", D(125), D(250)),
        Holding("AAPL", "USD", D(150), D(0)),  # a second portfolio's zero position
        Holding("7203", "JPY", D(2000), None),  # no JPY rate: left out
    ]
    body = allocation_body("USD", holdings, D(-20), ["NEW"])
    assert body["holdings_value"] == "1250"
    assert body["cash"] == "-20"
    assert [(r["symbol"], r["weight"]) for r in body["by_symbol"]] == [
        ("AAPL", "0.48"),
        ("SPY", "0.24"),
        ("SAP", "0.2"),
        ("BTC-USD", "0.08"),
    ]
    classes = {r["asset_class"]: r["weight"] for r in body["by_asset_class"]}
    assert classes == {"equity": "0.68", "etf": "0.24", "crypto": "0.08"}
    assert {r["currency"]: r["value"] for r in body["by_currency"]} == {"USD": "1000", "EUR": "250"}
    assert body["unpriced"] == ["NEW"] and body["unconverted"] == ["7203"]


def test_asset_classes_from_symbol_shape():
    cases = {
        "EURUSD": "fx",
        "GBP/JPY": "fx",
        "BTC": "crypto",
        "ETH-USD": "crypto",
        "BTCUSDT": "crypto",
        "^GSPC": "index",
        "QQQ": "etf",
        "MSFT": "equity",
        "BRK.B": "equity",
    }
    assert {s: asset_class(s) for s in cases} == cases


def test_movers_rank_by_change_against_the_first_price():
    moves = [
        Move("A", D(100), D(110)),  # +10 %
        Move("B", D(50), D(49)),  # -2 %
        Move("C", D(20), D(21)),  # +5 %
        Move("D", D(10), D(10)),  # unchanged: neither list
        Move("E", D(200), D(150)),  # -25 %
    ]
    body = movers_body("2024-03-15", moves, count=2)
    assert [(m["symbol"], m["change_pct"]) for m in body["gainers"]] == [
        ("A", "0.1"),
        ("C", "0.05"),
    ]
    assert [(m["symbol"], m["change"]) for m in body["losers"]] == [("E", "-50"), ("B", "-1")]


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def apply_all(pid: str, rows: list[dict]) -> tuple[PortfolioState, list[AppliedTransaction]]:
    """Run transactions through the real ledger, as the portfolio shard does."""
    state = PortfolioState(pid)
    applied = []
    for n, row in enumerate(rows):
        txn = Transaction.model_validate(
            {"txn_id": f"{pid}-{n}", "portfolio_id": pid, "user_id": "u1"} | row
        )
        result = state.apply(txn)
        assert result.applied, result
        applied.append(AppliedTransaction(txn, position_row(state, result.symbol)))
    return state, applied


def test_income_card_by_hand():
    def div(when: str, amount: str) -> dict:
        return {"type": "DIVIDEND", "symbol": "KO", "amount": amount, "executed_at": when}

    rows = [
        {"type": "DEPOSIT", "amount": "6000", "executed_at": "2022-12-01T00:00:00Z"},
        {
            "type": "BUY",
            "symbol": "KO",
            "quantity": "100",
            "price": "50",
            "executed_at": "2023-01-02T15:00:00Z",
        },
        div("2023-01-15T12:00:00Z", "44"),
        div("2023-04-15T12:00:00Z", "44"),
        div("2023-07-15T12:00:00Z", "44"),
        div("2023-10-15T12:00:00Z", "44"),
        {"type": "SPLIT", "symbol": "KO", "ratio": "2", "executed_at": "2023-11-01T00:00:00Z"},
        div("2024-01-15T12:00:00Z", "46"),
        div("2024-03-05T12:00:00Z", "3"),  # a special dividend this month
    ]
    ledger, applied = apply_all("p1", rows)
    book = PortfolioBook("p1")
    for item in applied:
        book.add_applied(item)
    # The shadow ledger holds what income needs, exactly as the ledger has it.
    assert book.ledger.dividends == ledger.dividends
    assert book.ledger.income == ledger.income
    assert book.ledger.positions["KO"].split_factor == D(2)
    body = income_body([("p1", book.ledger)], ms("2024-03-10T00:00:00"), count=3)
    assert body["month"] == "2024-03"
    assert body["this_month"] == {"USD": "3"}
    # after 2023-03-10: Apr, Jul, Oct, Jan, Mar = 44*3 + 46 + 3
    assert body["trailing_12m"] == {"USD": "181"}
    # 5 payments snap to 4 a year; the last one (3) x 4, units unchanged since
    assert body["projected_annual"] == {"USD": "12"}
    assert body["yield_on_cost"] == {"USD": "0.0024"}  # 12 / 5000
    assert body["next_payments"] == [
        {
            "date": "2024-06-05",
            "symbol": "KO",
            "portfolio_id": "p1",
            "amount": "3",
            "currency": "USD",
        }
    ]
    assert book.flows == {day("2022-12-01"): D(6000)}


def test_cards_are_published_when_their_version_rises():
    board = UserBoard("u1")
    first = board.publish({"a": (1_000, 0, {"x": 1}), "b": (1_000, 2, {"y": []})})
    assert set(first) == {"a", "b"} and first["a"].version == 1_000
    card = orjson.loads(first["b"].json)
    assert card == {"version": 1_002, "as_of": "1970-01-01T00:00:01.000Z", "y": []}
    # version = as_of + inputs absorbed: the same version is not published again
    assert board.publish({"a": (1_000, 0, {"x": 1}), "b": (999, 3, {"y": []})}) == {}
    # one more input: published, even with the same body (a later flush of
    # the same inputs must store the same version, see flows.dashboard.board)
    second = board.publish({"a": (1_000, 1, {"x": 1}), "b": (1_000, 2, {"y": []})})
    assert set(second) == {"a"} and second["a"].version == 1_001
    assert board.publish({"a": (5_000, 1, {"x": 3})})["a"].version == 5_001
    assert card_json(7, 0, b"{}") == b'{"version":7,"as_of":"1970-01-01T00:00:00.000Z"}'


def test_drift_in_points_against_the_target():
    target = {"AAA": D(60), "BBB": D(30), "CCC": D(10)}
    weights = {"AAA": D("0.571429"), "BBB": D("0.4"), "DDD": D("0.028571")}
    largest, rows = drift_rows(target, weights)
    assert largest == D(10)
    assert [(r["symbol"], r["target_pct"], r["weight_pct"], r["drift_pts"]) for r in rows] == [
        ("BBB", "30", "40", "10"),
        ("CCC", "10", "0", "-10"),  # targeted, not held: -target
        ("AAA", "60", "57.1429", "-2.8571"),
        ("DDD", "0", "2.8571", "2.8571"),  # held, not targeted: target 0
    ]
    assert drift_rows({}, {}) == (D(0), [])


def test_the_shown_target_does_not_depend_on_arrival_order():
    def rule(rule_id: str, active: bool) -> DriftTarget:
        return DriftTarget(rule_id, "u1", "p1", active, (("AAA", D(100)),))

    rules = {"r2": rule("r2", True), "r1": rule("r1", False), "r3": rule("r3", True)}
    assert effective(rules) == rules["r2"]  # active first, then smallest rule_id
    assert effective({"r1": rules["r1"]}) == rules["r1"]  # a paused rule still has a target
    assert effective({}) is None


def test_a_board_forgets_a_target_that_moved_or_was_removed():
    board = UserBoard("u1")
    target = DriftTarget("r1", "u1", "p1", True, (("AAA", D(100)),))
    board.set_target("r1", target)
    board.set_target("r1", target)  # the same again: no change
    assert board.targets == {"p1": {"r1": target}} and board.deps.targets == 1
    moved = target._replace(portfolio_id="p2")
    board.set_target("r1", moved)
    assert board.targets == {"p2": {"r1": moved}} and board.deps.targets == 3
    board.set_target("r1", None)
    board.set_target("r9", None)  # unknown: nothing
    assert board.targets == {} and board.deps.targets == 4


def test_allocation_reuses_a_single_valuations_weights_exactly():
    rows = [{"type": "DEPOSIT", "amount": "100000", "executed_at": "2024-01-02T00:00:00Z"}]
    for symbol, quantity, price in (("AAA", "3", "17.1"), ("BBB", "7", "3.3"), ("CCC", "11", "9")):
        rows.append(
            {"type": "BUY", "symbol": symbol, "quantity": quantity, "price": price}
            | {"executed_at": "2024-01-02T00:00:00Z"}
        )
    state, _ = apply_all("p1", rows)
    prices = {"AAA": D("17.33"), "BBB": D("3.07"), "CCC": D("9.91")}
    record = Valuer().value(state, prices, 0, 1_000)
    book = PortfolioBook("p1")
    book.add_valuation(record)
    holdings, unpriced = Caches().holdings(book)
    fast = allocation_body("USD", holdings, record.cash, unpriced, single=True)
    slow = allocation_body("USD", holdings, record.cash, unpriced, single=False)
    assert fast == slow
    assert [r["symbol"] for r in fast["by_symbol"]] == ["CCC", "AAA", "BBB"]


def test_drift_follows_rule_changes_through_the_user_shards():
    rows = [{"type": "DEPOSIT", "amount": "1000", "executed_at": "2024-01-02T00:00:00Z"}]
    for symbol, quantity in (("AAA", "3"), ("BBB", "1")):
        rows.append(
            {"type": "BUY", "symbol": symbol, "quantity": quantity, "price": "100"}
            | {"executed_at": "2024-01-02T00:00:00Z"}
        )
    state, _ = apply_all("p1", rows)
    state.user_id = "u1"
    record = Valuer().value(state, {"AAA": D(100), "BBB": D(100)}, 0, 1_000)
    router = Router(3, "")
    shards = {key: DashboardShard() for key in router.keys}
    home = router.key("u1")

    def rule(**extra: object) -> AlertRule:
        doc = {"rule_id": "d1", "user_id": "u1", "portfolio_id": "p1", "kind": "drift"}
        return AlertRule.model_validate(doc | {"threshold": "5"} | extra)

    def feed(changes: list, live: list) -> dict[str, dict]:
        items = [*router.rules(changes), (home, ShardInput(live, [], [], []))]
        for key, item in items:
            shards[key].add(item)
        out: dict[str, dict] = {}
        for shard in shards.values():
            for update in shard.flush():
                out |= {n: orjson.loads(c.json) for n, c in update.cards.items()}
        return out

    cards = feed([("d1", rule(target={"AAA": "50", "BBB": "50"}))], [record])
    [drift] = cards["allocation"]["drift"]
    assert (drift["rule_id"], drift["max_drift_pts"]) == ("d1", "25")  # 75/25 against 50/50
    # the rule now targets another portfolio (not valued): no drift to show
    cards = feed([("d1", rule(portfolio_id="p9", target={"AAA": "100"}))], [])
    assert cards["allocation"]["drift"] is None
    cards = feed([("d1", rule(target={"AAA": "75", "BBB": "25"}))], [])
    assert cards["allocation"]["drift"][0]["max_drift_pts"] == "0"
    # a tombstone names no user: it reaches every shard, and the target goes
    cards = feed([("d1", None), rules_end(0)], [])
    assert cards["allocation"]["drift"] is None
    assert all(not s.rule_owners for s in shards.values())
