"""The hot-path valuation (``Valuer`` -> ``ValuationRecord``) against the
reference ``value()`` -> pydantic ``Valuation``: for random ledgers and
price snapshots the record's JSON parses into exactly the reference model,
prints every decimal the way the contract does, and the record's own
fields agree. Also: the text helpers, and that the caches never go stale."""

from __future__ import annotations

import copy
import pickle
from decimal import Decimal, localcontext
from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flows.portfolio import PortfolioState, value
from flows.portfolio.fast_valuation import Valuer
from flows.portfolio.money import CTX, tidy
from flows.portfolio.valuation_record import ValuationRecord, decimal_text, iso_ms
from schemas.transactions import Transaction
from schemas.valuation import Valuation
from tests.test_portfolio_properties import T0, ledgers, price_snapshots

D = Decimal
EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TIMESTAMPS = ("window_start", "window_end")


def reference_doc(v: Valuation) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(v.model_dump_json())
    for name in TIMESTAMPS:
        doc.pop(name)
    return doc


def check_same(record: ValuationRecord, ref: Valuation) -> None:
    """The record is the reference valuation: same model, same text for
    every decimal, same totals in its fields."""
    model = Valuation.model_validate_json(record.json)
    assert model == ref
    assert model.model_dump() == ref.model_dump()
    doc = orjson.loads(record.json)
    assert [doc[name][-5:] for name in TIMESTAMPS] == [".000Z"] * 2  # ISO-8601, milliseconds
    for name in TIMESTAMPS:
        doc.pop(name)
    assert doc == reference_doc(ref)  # key order aside, byte for byte the same values
    fields = (
        "portfolio_id", "user_id", "base_currency", "market_value", "holdings_value", "cash",
        "cost_basis", "unrealized_pnl", "realized_pnl", "day_change", "version",
    )  # fmt: skip
    assert [getattr(record, f) for f in fields] == [getattr(ref, f) for f in fields]
    assert [repr(getattr(record, f)) for f in fields] == [repr(getattr(model, f)) for f in fields]
    assert (record.window_start, record.window_end) == (ref.window_start, ref.window_end)
    with localcontext(CTX):  # 28 digits (the default) could round the sum
        assert record.market_value == record.holdings_value + record.cash
    assert record.to_model() == ref
    assert record.json == orjson.dumps(orjson.loads(record.json))  # orjson's bytes, exactly


def build(txns: list[Transaction], base: str) -> PortfolioState:
    state = PortfolioState("p1", base_currency=base)
    for txn in txns:
        state.apply(txn)
    return state


@EXAMPLES
@given(txns=ledgers(), data=st.data())
def test_record_json_is_the_reference_valuation(txns: list[Transaction], data) -> None:
    state = build(txns, data.draw(st.sampled_from(["USD", "EUR", "JPY"])))
    if not state.user_id:
        return
    valuer = Valuer()
    previous: Decimal | None = data.draw(st.sampled_from([None, D(0), D("1234.5678")]))
    for _ in range(2):  # the second round runs on warm caches with new prices
        snapshot = data.draw(price_snapshots())
        record = valuer.value(state, snapshot, T0, T0 + 1000, previous)
        check_same(record, value(state, snapshot, T0, T0 + 1000, previous))
    if orjson.loads(record.json)["unconverted"]:
        event("something left unconverted")


# Extreme numbers: tiny and huge quantities and prices, trailing zeros, exponents.
extreme = st.one_of(
    st.decimals(D("0.000000000001"), D("0.00001"), places=12),
    st.decimals(D("0.01"), D("99999"), places=2),
    st.decimals(D("1"), D("999999999"), places=0),  # holdings stay below the 10^20 cap
    st.sampled_from([D("1E+3"), D("2.500"), D("100.000000"), D("0.10"), D("7E-12")]),
)


@EXAMPLES
@given(
    positions=st.lists(st.tuples(extreme, extreme), min_size=1, max_size=6),
    marks=st.lists(extreme, min_size=6, max_size=6),
    cash=extreme,
    priced=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_extreme_numbers_print_like_the_contract(positions, marks, cash, priced) -> None:
    state = PortfolioState("p1")
    rows: list[dict[str, Any]] = [{"type": "DEPOSIT", "amount": cash}]
    for i, (quantity, price) in enumerate(positions):
        rows.append({"type": "BUY", "symbol": f"S{i}", "quantity": quantity, "price": price})
    for i, row in enumerate(rows):
        txn = Transaction.model_validate(
            {"txn_id": f"t{i}", "portfolio_id": "p1", "user_id": "u1", "executed_at": T0, **row}
        )
        assert state.apply(txn).applied
    snapshot = {f"S{i}": mark for i, mark in enumerate(marks) if priced[i]}
    check_same(
        Valuer().value(state, snapshot, T0, T0 + 1000), value(state, snapshot, T0, T0 + 1000)
    )


@EXAMPLES
@given(
    positions=st.lists(st.tuples(extreme, extreme), max_size=6),
    marks=st.lists(extreme, min_size=6, max_size=6),
    cash=extreme,
    sell=st.booleans(),
    previous=st.sampled_from([None, D(0), D("1234.5678")]),
)
def test_the_base_currency_fast_path_writes_the_general_records_bytes(
    positions, marks, cash, sell, previous
) -> None:
    """Every position and balance in the base currency, all priced: the
    fast path's record is the general path's, field for field and byte
    for byte (realized P&L included when a position was sold)."""
    state = PortfolioState("p1")
    rows: list[dict[str, Any]] = [{"type": "DEPOSIT", "amount": cash}]
    for i, (quantity, price) in enumerate(positions):
        rows.append({"type": "BUY", "symbol": f"S{i}", "quantity": quantity, "price": price})
    if sell and positions:
        rows.append(
            {"type": "SELL", "symbol": "S0", "quantity": positions[0][0], "price": marks[0]}
        )
    for i, row in enumerate(rows):
        txn = Transaction.model_validate(
            {"txn_id": f"t{i}", "portfolio_id": "p1", "user_id": "u1", "executed_at": T0, **row}
        )
        state.apply(txn)
    snapshot = {f"S{i}": mark for i, mark in enumerate(marks)}
    valuer = Valuer()
    fast = valuer.value(state, snapshot, T0, T0 + 1000, previous)
    book = valuer._books["p1"]
    general = valuer._general_record(state, book, snapshot, T0, T0 + 1000, previous)
    assert [repr(x) for x in fast] == [repr(x) for x in general]
    check_same(fast, value(state, snapshot, T0, T0 + 1000, previous))
    event(f"fast path: {book.steady is not None}")


def test_caches_follow_new_transactions_and_new_prices() -> None:
    state = PortfolioState("p1")
    valuer = Valuer()

    def apply(n: int, **row: Any) -> None:
        txn = {"txn_id": f"t{n}", "portfolio_id": "p1", "user_id": "u1", "executed_at": T0}
        assert state.apply(Transaction.model_validate({**txn, **row})).applied

    apply(1, type="BUY", symbol="AAA", quantity="2", price="10")
    first = valuer.value(state, {"AAA": D(11)}, T0, T0 + 1000)
    assert orjson.loads(first.json)["positions"][0]["quantity"] == "2"
    apply(2, type="BUY", symbol="AAA", quantity="3", price="10")
    apply(3, type="BUY", symbol="BBB", quantity="1", price="5")
    prices = {"AAA": D(12), "BBB": D(6)}
    second = valuer.value(state, prices, T0 + 1000, T0 + 2000)
    check_same(second, value(state, prices, T0 + 1000, T0 + 2000))
    assert second.holdings_value == D(66)  # 5 x 12 + 1 x 6: the new quantity, the new price
    apply(4, type="SELL", symbol="AAA", quantity="5", price="12")
    third = valuer.value(state, prices, T0 + 2000, T0 + 3000)
    assert [p["symbol"] for p in orjson.loads(third.json)["positions"]] == ["BBB"]


def test_a_copied_or_pickled_valuer_starts_empty_and_gives_the_same_answer() -> None:
    state = PortfolioState("p1")
    txn = {"txn_id": "t1", "portfolio_id": "p1", "user_id": "u1", "executed_at": T0}
    state.apply(Transaction.model_validate({**txn, "type": "BUY", "symbol": "A", "quantity": "1",
                                            "price": "1"}))  # fmt: skip
    valuer = Valuer()
    record = valuer.value(state, {"A": D(2)}, T0, T0 + 1000)
    for clone in (copy.deepcopy(valuer), pickle.loads(pickle.dumps(valuer))):
        assert len(pickle.dumps(clone)) < 100  # no cached books travel
        assert clone.value(state, {"A": D(2)}, T0, T0 + 1000) == record


decimals = st.one_of(
    st.decimals(D("-1E20"), D("1E20"), places=12),
    st.decimals(D("-1"), D("1"), places=12),
    st.builds(lambda c, e: D(c).scaleb(e), st.integers(-(10**15), 10**15), st.integers(-20, 8)),
)


@settings(max_examples=500)
@given(d=decimals)
def test_decimal_text_is_the_contract_text(d: Decimal) -> None:
    assert decimal_text(d) == format(tidy(d), "f")


def test_iso_ms_has_milliseconds_and_a_z() -> None:
    assert iso_ms(T0 + 1000) == "2023-11-14T22:13:21.000Z"
    assert iso_ms(T0 + 42) == "2023-11-14T22:13:20.042Z"
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
