"""Valuation on hand-computed cases: FX direct/inverse/missing, unpriced,
weights, day change, and the published JSON."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from flows.portfolio import FxConverter, PortfolioError, PortfolioState, value
from schemas.transactions import Transaction
from schemas.valuation import Valuation

D = Decimal
T0 = 1_700_000_000_000
_ids = iter(range(1, 1_000_000))


def book(base: str = "USD", *rows: dict[str, object]) -> PortfolioState:
    state = PortfolioState("p1", base_currency=base)
    for row in rows:
        txn = Transaction.model_validate(
            {"txn_id": f"t{next(_ids)}", "portfolio_id": "p1", "user_id": "u1",
             "executed_at": T0, **row}
        )  # fmt: skip
        assert state.apply(txn).applied
    return state


def buy(symbol: str, quantity: str, price: str, currency: str = "USD") -> dict[str, object]:
    return {"type": "BUY", "symbol": symbol, "quantity": quantity, "price": price,
            "currency": currency}  # fmt: skip


def cash(amount: str, currency: str = "USD") -> dict[str, object]:
    return {"type": "DEPOSIT", "amount": amount, "currency": currency}


def test_direct_pair_is_used_before_the_inverse_one() -> None:
    fx = FxConverter({"EURUSD": D("1.25"), "USDEUR": D("0.5")}, "USD")
    assert fx.convert(D(10), "EUR") == D("12.5")  # 10 x 1.25, not 10 / 0.5
    inverse_only = FxConverter({"USDGBP": D("0.8")}, "USD")
    assert inverse_only.convert(D(10), "GBP") == D("12.5")  # 10 / 0.8
    assert inverse_only.convert(D(10), "JPY") is None
    assert inverse_only.convert(D(10), "USD") == D(10)


def test_multi_currency_valuation_with_inverse_pair() -> None:
    state = book(
        "USD",
        cash("1000"),
        buy("AAA", "10", "50"),  # USD cash 1000 - 500 = 500
        buy("VOD", "100", "2", "GBP"),  # GBP cash -200
    )
    prices = {"AAA": D("60"), "VOD": D("2.5"), "USDGBP": D("0.8")}
    v = value(state, prices, T0, T0 + 1000)
    # AAA 10 x 60 = 600; VOD 100 x 2.5 = 250 GBP / 0.8 = 312.5 USD; holdings 912.5
    assert v.holdings_value == D("912.5")
    # cash 500 USD + (-200 GBP / 0.8 = -250 USD) = 250; market value = holdings + cash
    assert (v.cash, v.market_value) == (D(250), D("1162.5"))
    # cost 500 + 200 / 0.8 = 750; unrealized (600 - 500) + (312.5 - 250) = 162.5
    assert (v.cost_basis, v.unrealized_pnl) == (D(750), D("162.5"))
    assert [(p.symbol, p.market_value, p.weight) for p in v.positions] == [
        ("AAA", D(600), D("0.657534")),  # 600 / 912.5 = 0.6575342...
        ("VOD", D("312.5"), D("0.342466")),  # 312.5 / 912.5 = 0.3424657...
    ]
    assert v.unpriced == [] and v.unconverted == {}
    assert v.day_change is None


def test_unpriced_and_unconvertible_amounts_are_reported_not_guessed() -> None:
    state = book(
        "USD",
        buy("AAA", "2", "10"),
        buy("TYO", "1", "1000", "JPY"),
        buy("NEW", "1", "5"),
        cash("500", "JPY"),
    )
    v = value(state, {"AAA": D(11), "TYO": D(1100)}, T0, T0 + 1000, previous_close=D(-20))
    assert v.unpriced == ["NEW"]  # no price: listed, not valued at 0
    # JPY: TYO 1 x 1100 + cash (500 - 1000) = 600 left out
    assert v.unconverted == {"JPY": D(600)}
    assert v.holdings_value == D(22)  # AAA only
    assert v.market_value == D(-3)  # 22 + cash -25
    assert v.cost_basis == D(25)  # AAA 20 + NEW 5 (known without a price)
    assert v.unrealized_pnl == D(2)  # AAA only: 22 - 20
    assert v.cash == D(-25)  # USD: -20 - 5
    assert v.day_change == D(17)  # (22 - 25) - (-20)
    tyo = v.positions[1]
    assert (tyo.symbol, tyo.price, tyo.market_value, tyo.weight) == ("TYO", D(1100), None, None)


def test_realized_pnl_in_a_currency_without_rate_marks_it_unconverted() -> None:
    state = book(
        "USD",
        buy("TYO", "1", "1000", "JPY"),
        {"type": "SELL", "symbol": "TYO", "quantity": "1", "price": "1000", "currency": "JPY",
         "fees": "10"},
        cash("10", "JPY"),
    )  # fmt: skip
    v = value(state, {}, T0, T0 + 1000)
    # JPY cash -1000 + 1000 - 10 + 10 = 0 needs no rate; realized -10 JPY cannot be converted
    assert v.unconverted == {"JPY": D(0)}
    assert (v.realized_pnl, v.cash, v.market_value) == (D(0), D(0), D(0))


def test_weights_when_holdings_value_is_zero() -> None:
    # 1e-12 units x 0.1 = 1e-13, which rounds to a market value of 0
    state = book("USD", buy("DUST", "0.000000000001", "0.1"))
    v = value(state, {"DUST": D("0.1")}, T0, T0 + 1000)
    assert v.holdings_value == 0
    assert [(p.market_value, p.weight) for p in v.positions] == [(D(0), D(0))]


def test_equal_weights_round_to_six_places() -> None:
    state = book("EUR", *(buy(s, "1", "1", "EUR") for s in ("A", "B", "C")))
    v = value(state, {"A": D(1), "B": D(1), "C": D(1)}, T0, T0 + 1000)
    assert [p.weight for p in v.positions] == [D("0.333333")] * 3


def test_published_json_carries_exact_strings_and_version() -> None:
    state = book("USD", cash("0.1"), buy("AAA", "3", "0.1"))
    v = value(state, {"AAA": D("0.35")}, T0, T0 + 60_000, previous_close=D("0.2"))
    doc = json.loads(v.model_dump_json())
    # 3 x 0.35 = 1.05; cash 0.1 - 0.3 = -0.2; market value 0.85; day change 0.65
    assert doc["holdings_value"] == "1.05"
    assert (doc["cash"], doc["market_value"], doc["day_change"]) == ("-0.2", "0.85", "0.65")
    assert doc["positions"][0]["weight"] == "1"
    assert doc["version"] == T0 + 60_000
    assert doc["window_end"] == "2023-11-14T22:14:20Z"
    assert doc["schema_version"] == 2  # market_value includes cash since 2
    assert Valuation.model_validate(doc).model_dump() == v.model_dump()


def test_closed_positions_are_not_listed_but_keep_realized_pnl() -> None:
    state = book(
        "USD",
        buy("AAA", "1", "10"),
        {"type": "SELL", "symbol": "AAA", "quantity": "1", "price": "15"},
    )
    v = value(state, {"AAA": D(20)}, T0, T0 + 1000)
    assert v.positions == [] and v.realized_pnl == D(5) and v.cash == D(5)


def test_a_portfolio_without_transactions_cannot_be_valued() -> None:
    with pytest.raises(PortfolioError):
        value(PortfolioState("p9"), {}, T0, T0 + 1000)
