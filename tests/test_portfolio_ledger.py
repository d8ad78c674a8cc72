"""Ledger semantics on hand-computed examples: average cost, splits,
rejections, exactly-once, picklability, and the holders index."""

from __future__ import annotations

import copy
import pickle
from decimal import Decimal

import pytest

from flows.portfolio import (
    ApplyStatus,
    HoldersIndex,
    PortfolioState,
    WrongPortfolioError,
    fx_pair,
)
from schemas.transactions import Transaction

D = Decimal
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
_counter = iter(range(1, 1_000_000))


def txn(kind: str, minute: int = 0, **fields: object) -> Transaction:
    fields.setdefault("txn_id", f"t{next(_counter)}")
    fields.setdefault("portfolio_id", "p1")
    return Transaction.model_validate(
        {"user_id": "u1", "type": kind, "executed_at": T0 + minute * 60_000, **fields}
    )


def applied(state: PortfolioState, *txns: Transaction) -> None:
    for item in txns:
        result = state.apply(item)
        assert result.status is ApplyStatus.APPLIED, result


def without_rejections(state: PortfolioState) -> PortfolioState:
    stripped = copy.deepcopy(state)
    stripped.rejected_ids.clear()
    return stripped


def test_average_cost_walkthrough() -> None:
    state = PortfolioState("p1")
    applied(
        state,
        txn("DEPOSIT", amount="10000"),
        # cost 10*100 + 5 = 1005; cash 10000 - 1005 = 8995
        txn("BUY", symbol="AAA", quantity="10", price="100", fees="5"),
        # cost 10*110 + 5 = 1105; basis 2110 for 20 units (avg 105.5); cash 7890
        txn("BUY", symbol="AAA", quantity="10", price="110", fees="5"),
        # removed 5 * 105.5 = 527.5; pnl 5*120 - 527.5 - 2 = 70.5; cash 7890 + 600 - 2 = 8488
        txn("SELL", symbol="AAA", quantity="5", price="120", fees="2"),
    )
    aaa = state.positions["AAA"]
    assert (aaa.quantity, aaa.cost_basis, aaa.realized_pnl) == (D(15), D("1582.5"), D("70.5"))
    assert aaa.average_cost == D("105.5")
    assert state.cash == {"USD": D("8488")}

    # 2-for-1: 30 units, same basis 1582.5 (avg 52.75)
    applied(state, txn("SPLIT", symbol="AAA", ratio="2"))
    assert (aaa.quantity, aaa.cost_basis, aaa.average_cost) == (D(30), D("1582.5"), D("52.75"))

    applied(
        state,
        txn("DIVIDEND", symbol="AAA", amount="15"),  # cash 8503
        txn("FEE", amount="3"),  # cash 8500; fees 5 + 5 + 2 + 3 = 15
        # sell all: removes the whole basis 1582.5; pnl 1800 - 1582.5 = 217.5
        txn("SELL", symbol="AAA", quantity="30", price="60"),
        txn("WITHDRAWAL", amount="300"),  # cash 8500 + 1800 - 300 = 10000
    )
    assert (aaa.quantity, aaa.cost_basis, aaa.realized_pnl) == (D(0), D(0), D("288"))
    assert (aaa.dividends, aaa.fees) == (D(15), D(12))
    assert state.cash == {"USD": D("10000")}
    assert state.fees_paid == {"USD": D(15)}
    assert state.realized == {"USD": D(288)}
    assert state.open_symbols == set()
    assert [(f.currency, f.amount) for f in state.flows] == [("USD", D(10000)), ("USD", D(-300))]
    assert state.income == {("AAA", "USD", "2023-11"): D(15)}
    assert state.seq == 9


def test_rejections_leave_state_untouched() -> None:
    state = PortfolioState("p1")
    applied(
        state,
        txn("BUY", symbol="AAA", quantity="2", price="10"),
        txn("BUY", symbol="BBB", quantity="0.000000000001", price="10"),
    )
    before = copy.deepcopy(state)
    cases = [
        (txn("SELL", symbol="AAA", quantity="3", price="10"), "oversell"),
        (txn("SELL", symbol="ZZZ", quantity="1", price="10"), "oversell"),
        (txn("SPLIT", symbol="ZZZ", ratio="2"), "split_without_position"),
        # 1e-12 units x 0.1 = 1e-13, which rounds to 0 at 12 places
        (txn("SPLIT", symbol="BBB", ratio="0.1"), "split_rounds_to_zero"),
        (txn("BUY", symbol="AAA", quantity="1", price="10", currency="EUR"), "currency_mismatch"),
        (txn("DIVIDEND", symbol="AAA", amount="1", currency="EUR"), "currency_mismatch"),
    ]
    for item, reason in cases:
        result = state.apply(item)
        assert (result.status, result.reason) == (ApplyStatus.REJECTED, reason)
        assert state.rejected_ids[item.txn_id] == reason
        assert without_rejections(state) == before
    # A rejected id stays decided: even once possible, a redelivery is a duplicate.
    oversell = cases[0][0]
    applied(state, txn("BUY", symbol="AAA", quantity="1", price="10"))
    repeat = state.apply(oversell)
    assert (repeat.status, repeat.reason) == (ApplyStatus.DUPLICATE, "oversell")
    assert state.positions["AAA"].quantity == 3


def test_split_after_selling_everything_is_rejected() -> None:
    state = PortfolioState("p1")
    applied(
        state,
        txn("BUY", symbol="AAA", quantity="2", price="10"),
        txn("SELL", symbol="AAA", quantity="2", price="11"),
    )
    assert state.apply(txn("SPLIT", symbol="AAA", ratio="3")).reason == "split_without_position"


def test_each_txn_id_applies_exactly_once() -> None:
    state = PortfolioState("p1")
    buy = txn("BUY", symbol="AAA", quantity="1", price="10")
    assert state.apply(buy).status is ApplyStatus.APPLIED
    after_first = copy.deepcopy(state)
    for _ in range(3):
        assert state.apply(buy).status is ApplyStatus.DUPLICATE
    # Same id, different content: still a duplicate, still no change.
    changed = txn("BUY", txn_id=buy.txn_id, symbol="AAA", quantity="5", price="10")
    assert state.apply(changed).status is ApplyStatus.DUPLICATE
    assert state == after_first


def test_wrong_portfolio_is_a_caller_error() -> None:
    with pytest.raises(WrongPortfolioError):
        PortfolioState("p1").apply(txn("DEPOSIT", amount="1", portfolio_id="p2"))


def test_derived_amounts_keep_twelve_places() -> None:
    state = PortfolioState("p1")
    applied(
        state,
        txn("BUY", symbol="AAA", quantity="3", price="1"),  # 3 units, basis 3
        txn("SPLIT", symbol="AAA", ratio="0.5"),  # 1.5 units, basis 3
        # cost 1.5 * 1e-12 = 1.5e-12, half-even to 12 places -> 2e-12: basis 3.000000000002
        txn("BUY", symbol="AAA", quantity="1.5", price="0.000000000001"),
        # removed = 3.000000000002 * 1 / 3 = 1.000000000000666... -> 1.000000000001
        txn("SELL", symbol="AAA", quantity="1", price="1"),
    )
    aaa = state.positions["AAA"]
    assert aaa.quantity == D(2)
    assert aaa.cost_basis == D("2.000000000001")
    # pnl = 1 - 1.000000000001 = -0.000000000001
    assert aaa.realized_pnl == D("-0.000000000001")


def test_state_pickles_round_trip() -> None:
    state = PortfolioState("p1", base_currency="EUR")
    applied(
        state,
        txn("DEPOSIT", amount="100", currency="EUR"),
        txn("BUY", symbol="AAA", quantity="1", price="10"),
        txn("DIVIDEND", symbol="AAA", amount="1"),
    )
    restored = pickle.loads(pickle.dumps(state))
    assert restored == state
    assert restored.apply(txn("DEPOSIT", amount="1", txn_id="t1x")).applied


def test_holders_index_follows_opens_and_closes() -> None:
    index = HoldersIndex()
    usd, eur = PortfolioState("p1"), PortfolioState("p2", base_currency="EUR")
    steps = [
        (usd, txn("BUY", symbol="AAA", quantity="1", price="10")),
        (eur, txn("BUY", symbol="AAA", quantity="1", price="10", portfolio_id="p2")),
        (usd, txn("BUY", symbol="SAP", quantity="1", price="10", currency="EUR")),
        (usd, txn("SELL", symbol="AAA", quantity="1", price="10")),
        (usd, txn("SELL", symbol="AAA", quantity="1", price="10")),  # rejected: no-op
    ]
    for state, item in steps:
        index.record(state, state.apply(item))
    assert index.holders("AAA") == {"p2"}
    assert index.holders("SAP") == {"p1"}
    # p1 (USD base) is exposed to EUR, p2 (EUR base) to USD: both move with EURUSD.
    assert index.affected(["EURUSD"]) == {"p1", "p2"}
    assert index.affected(["GBPUSD"]) == {"p2"}
    assert index.affected(["AAA", "NOPE"]) == {"p2"}
    assert index == HoldersIndex.from_states([usd, eur])
    index.remove(usd)
    index.remove(eur)
    assert index == HoldersIndex()


def test_fx_pair_recognises_only_two_known_codes() -> None:
    assert fx_pair("EURUSD") == ("EUR", "USD")
    assert fx_pair("AAPLXX") is None
    assert fx_pair("USDUSD") is None
    assert fx_pair("EURUS") is None
