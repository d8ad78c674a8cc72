"""A portfolio shard emits ``ValuationRecord``s that are the contract, with
``market_value`` = holdings + cash driving the day change; its snapshots
restore to the same shard and re-pickle only the ledgers that changed."""

from __future__ import annotations

import pickle
from decimal import Decimal
from typing import Any

import orjson

from flows.alerts.inputs import observe_valuation
from flows.portfolio.fast_valuation import Valuer
from flows.portfolio.money import DAY_MS
from flows.valuation.coalesce import ClosedWindows, PriceChange
from flows.valuation.shard import PortfolioShard
from flows.valuation.snapshot import ShardSnapshotter, restore
from flows.valuation.steps import PortfolioShardLogic
from flows.valuation.transactions import SourcedTransaction
from schemas.transactions import Transaction
from schemas.valuation import Valuation
from tests.test_alerts_support import book_with, mk

D = Decimal
DAY0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
_ids = iter(range(1, 1_000_000))


def txn(pid: str, ms: int, **row: Any) -> SourcedTransaction:
    doc = {"txn_id": f"t{next(_ids)}", "portfolio_id": pid, "user_id": "u-" + pid,
           "executed_at": ms, **row}  # fmt: skip
    return SourcedTransaction(Transaction.model_validate(doc), "portfolio.transactions", 0, 0)


def prices(end: int, **marks: str) -> ClosedWindows:
    changes = {s: PriceChange(D(p), end - 1, "USD") for s, p in marks.items()}
    return ClosedWindows("market.ticks#0", end, [(end, changes)])


def opened_shard() -> PortfolioShard:
    shard = PortfolioShard(1_000, 60_000)
    shard.add_transactions(
        [
            txn("p1", DAY0, type="DEPOSIT", amount="1000"),
            txn("p1", DAY0, type="BUY", symbol="AAA", quantity="10", price="50"),
            txn("p2", DAY0, type="DEPOSIT", amount="100"),
            txn("p2", DAY0, type="BUY", symbol="BBB", quantity="1", price="20"),
        ]
    )
    shard.add_prices(prices(DAY0 + 1_000, AAA="60", BBB="25"))
    return shard


def test_records_are_the_contract_and_only_holders_are_revalued() -> None:
    shard = opened_shard()
    out = shard.advance()
    assert [r.portfolio_id for r in out.live] == ["p1", "p2"]
    p1 = Valuation.model_validate_json(out.live[0].json)
    # holdings 10 x 60 = 600; cash 1000 - 500 = 500; market value 1100
    assert (p1.holdings_value, p1.cash, p1.market_value) == (D(600), D(500), D(1100))
    assert out.live[0].market_value == D(1100) and out.live[0].version == DAY0 + 1_000
    assert p1.window_start.timestamp() * 1000 == DAY0 and p1.day_change is None
    shard.add_prices(prices(DAY0 + 2_000, BBB="26"))
    assert [r.portfolio_id for r in shard.advance().live] == ["p2"]  # only BBB moved


def test_the_configured_benchmark_symbols_are_reported_per_window() -> None:
    shard = opened_shard()
    assert [b[0] for b in shard.advance().benchmarks] == []  # SPY by default: not priced
    shard.benchmark_symbols = frozenset({"BBB", "SPY"})
    shard.add_prices(prices(DAY0 + 2_000, AAA="61", BBB="26"))
    assert shard.advance().benchmarks == [("BBB", DAY0 + 1_999, D(26))]


def test_day_change_is_against_the_previous_days_closing_market_value() -> None:
    shard = opened_shard()
    shard.advance()  # day 0 closes at 1100 for p1 (cash included)
    next_day = DAY0 + DAY_MS + 1_000
    shard.add_transactions([txn("p1", next_day - 500, type="DEPOSIT", amount="50")])
    shard.add_prices(prices(next_day, AAA="61"))
    [p1] = [r for r in shard.advance().live if r.portfolio_id == "p1"]
    # 610 + 550 = 1160; the deposit counts, as the market value includes cash
    assert (p1.market_value, p1.day_change) == (D(1160), D(60))
    assert orjson.loads(p1.json)["day_change"] == "60"


def test_a_history_record_is_the_valuation_of_its_minute() -> None:
    """At a minute's end the history records of portfolios valued live in
    that window are their live records re-windowed: the same as valuing
    them afresh for the minute (checked against a new Valuer)."""
    shard = opened_shard()
    shard.advance()  # both valued at DAY0 + 1s: history-dirty
    minute = DAY0 + 60_000
    shard.add_prices(prices(minute - 1_000, BBB="27"))
    shard.advance()
    shard.add_prices(prices(minute, AAA="62"))  # p1 valued live at the minute's end, p2 not
    out = shard.advance()
    assert [r.portfolio_id for r in out.live] == ["p1"]
    assert [r.portfolio_id for r in out.history] == ["p1", "p2"]
    for record in out.history:
        mark = shard.days[record.portfolio_id]
        fresh = Valuer().value(
            shard.states[record.portfolio_id], shard.prices, DAY0, minute, mark.previous_close
        )
        assert record == fresh
    assert out.history[0].json != out.live[0].json  # the window start differs
    assert out.history[0]._replace(window_start_ms=0, json=b"") == out.live[0]._replace(
        window_start_ms=0, json=b""
    )


def test_snapshots_restore_the_shard_and_reuse_unchanged_ledgers() -> None:
    shard = opened_shard()
    shard.advance()
    snapshotter = ShardSnapshotter()
    first = snapshotter.take(shard)
    stored = pickle.loads(pickle.dumps(first))  # what Bytewax keeps
    restored, resumed = restore(stored)
    assert restored == shard and restored.holders == shard.holders
    shard.add_transactions([txn("p1", DAY0 + 1_500, type="FEE", amount="1")])
    shard.add_prices(prices(DAY0 + 2_000, AAA="62"))
    restored.add_transactions([txn("p1", DAY0 + 1_500, type="FEE", amount="1")])
    restored.add_prices(prices(DAY0 + 2_000, AAA="62"))
    live = restored.advance().live
    assert [r.json for r in live] == [r.json for r in shard.advance().live]
    # only AAA moved, so only p1: 10 x 62 + (500 - 1) cash
    assert [(r.portfolio_id, r.market_value) for r in live] == [("p1", D(1119))]
    second = snapshotter.take(shard)
    assert second.ledgers["p2"] is first.ledgers["p2"]  # untouched: the same pickle
    assert second.ledgers["p1"] != first.ledgers["p1"]
    assert restore(second)[0] == shard
    assert resumed.take(restored).ledgers["p2"] is stored.ledgers["p2"]  # seeded on restore


def test_the_logic_resumes_from_its_own_snapshot() -> None:
    logic = PortfolioShardLogic.resume(None, 1_000, 60_000, lambda: DAY0, drain_at_eof=True)
    logic.on_batch([("txns", [txn("p9", DAY0, type="DEPOSIT", amount="5")])])
    logic.on_batch([("prices", prices(DAY0 + 1_000, AAA="1"))])
    again = PortfolioShardLogic.resume(logic.snapshot(), 1_000, 60_000, lambda: DAY0, True)
    assert again.state == logic.state and "p9" in again.state.states


def test_alert_rules_see_a_record_as_they_see_the_contract_model() -> None:
    shard = opened_shard()
    [p1, _] = shard.advance().live  # p1: 600 in AAA + 500 cash = 1100
    rules = (
        mk("goal", "goal_reached", "1050", portfolio_id="p1"),  # needs the cash in
        mk("conc", "concentration", "50", portfolio_id="p1"),
    )
    from_record = observe_valuation(book_with(*rules), p1)
    from_model = observe_valuation(book_with(*rules), p1.to_model())
    assert {(a.rule_id, a.symbol) for a in from_record} == {("goal", None), ("conc", "AAA")}
    assert [a.model_dump() for a in from_record] == [a.model_dump() for a in from_model]
    # Without rules for the portfolio its JSON is never parsed.
    assert observe_valuation(book_with(*rules), p1._replace(portfolio_id="p2", json=b"?")) == []


def test_a_shard_snapshotted_the_old_way_still_resumes() -> None:
    shard = opened_shard()
    shard.advance()
    old = pickle.loads(pickle.dumps(shard))
    del old.__dict__["valuer"], old.__dict__["dirty"]  # fields it did not have
    logic = PortfolioShardLogic.resume(old, 1_000, 60_000, lambda: DAY0, True)
    logic.on_batch([("prices", prices(DAY0 + 2_000, AAA="70"))])
    assert logic.snapshotter.take(logic.state).ledgers.keys() == {"p1", "p2"}
