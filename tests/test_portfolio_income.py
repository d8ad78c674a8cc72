"""Dividend income on hand-checked cases: by month, trailing twelve months,
projection (frequency, holdings changes, splits), yield on cost."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from flows.portfolio import PortfolioState, income_summary
from flows.portfolio.income import dividends_by_month, snap_frequency
from schemas.transactions import Transaction

D = Decimal
_ids = iter(range(1, 1_000_000))


def ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


def apply(state: PortfolioState, day: str, **fields: object) -> None:
    txn = Transaction.model_validate(
        {"txn_id": f"t{next(_ids)}", "portfolio_id": "p1", "user_id": "u1",
         "executed_at": ms(day), **fields}
    )  # fmt: skip
    assert state.apply(txn).applied


def quarterly_payer() -> PortfolioState:
    state = PortfolioState("p1")
    apply(state, "2023-01-10", type="BUY", symbol="XYZ", quantity="100", price="20")  # cost 2000
    for day in ("2023-03-15", "2023-06-15", "2023-09-15", "2023-12-15"):
        apply(state, day, type="DIVIDEND", symbol="XYZ", amount="25")
    return state


def test_quarterly_payer_projection_and_yield_on_cost() -> None:
    state = quarterly_payer()
    summary = income_summary(state, ms("2024-01-01"))
    (xyz,) = summary.symbols
    # 4 payments of 25 in the trailing year: 100; quarterly; 25 x 4 x 100/100 units = 100
    assert (xyz.trailing_12m, xyz.payments_12m, xyz.frequency) == (D(100), 4, 4)
    assert xyz.projected_annual == D(100)
    assert xyz.yield_on_cost == D("0.05")  # 100 / 2000
    assert summary.trailing_12m == {"USD": D(100)}
    assert summary.by_month == {
        m: {"USD": D(25)} for m in ("2023-03", "2023-06", "2023-09", "2023-12")
    }
    assert summary.yield_on_cost is None  # no prices given: no portfolio-wide figure


def test_projection_follows_holdings_through_a_split() -> None:
    state = quarterly_payer()
    apply(state, "2024-01-05", type="SPLIT", symbol="XYZ", ratio="2")  # 200 units
    apply(state, "2024-01-06", type="BUY", symbol="XYZ", quantity="100", price="12")  # basis 3200
    (xyz,) = income_summary(state, ms("2024-01-10")).symbols
    # last payment 25 on 100 units = 200 units in today's terms; 300 held now
    # 25 x 4 x 300 / 200 = 150; yield on cost 150 / 3200 = 0.046875
    assert (xyz.projected_annual, xyz.yield_on_cost) == (D(150), D("0.046875"))


def test_trailing_window_excludes_its_start_and_snaps_frequency() -> None:
    state = quarterly_payer()
    (xyz,) = income_summary(state, ms("2024-03-15")).symbols
    # window (2023-03-15, 2024-03-15]: 3 payments, 75; 3 snaps to quarterly (tie -> higher)
    assert (xyz.trailing_12m, xyz.payments_12m, xyz.frequency) == (D(75), 3, 4)
    assert xyz.projected_annual == D(100)  # 25 x 4 x 100/100
    assert [snap_frequency(n) for n in (0, 1, 2, 3, 5, 7, 8, 11, 13)] == [
        0, 1, 2, 4, 4, 4, 12, 12, 13,
    ]  # fmt: skip


def test_portfolio_yield_on_cost_converts_or_reports() -> None:
    state = quarterly_payer()
    apply(state, "2023-02-01", type="BUY", symbol="ABC", quantity="10", price="100",
          currency="EUR")  # fmt: skip  # cost 1000 EUR
    apply(state, "2023-06-01", type="DIVIDEND", symbol="ABC", amount="30", currency="EUR")
    as_of = ms("2024-01-01")
    with_fx = income_summary(state, as_of, {"EURUSD": D("1.1")})
    # income 100 + 30 x 1.1 = 133; cost 2000 + 1000 x 1.1 = 3100; 133 / 3100 = 0.0429032258064516...
    assert with_fx.yield_on_cost == D("0.042903225806")
    assert with_fx.projected_annual == {"USD": D(100), "EUR": D(30)}
    without_fx = income_summary(state, as_of, {})
    assert without_fx.unconverted == {"EUR": D(30)}
    assert without_fx.yield_on_cost == D("0.05")  # USD only: 100 / 2000


def test_sold_out_or_lapsed_payers_project_nothing() -> None:
    state = quarterly_payer()
    apply(state, "2023-12-20", type="SELL", symbol="XYZ", quantity="100", price="21")
    apply(state, "2022-05-01", type="DIVIDEND", symbol="OLD", amount="9")  # never held
    apply(state, "2022-04-01", type="BUY", symbol="LAP", quantity="1", price="10")
    apply(state, "2022-05-01", type="DIVIDEND", symbol="LAP", amount="1")
    summary = income_summary(state, ms("2024-01-01"))
    by_symbol = {s.symbol: s for s in summary.symbols}
    assert set(by_symbol) == {"XYZ", "LAP"}  # OLD: neither paid recently nor held
    assert (by_symbol["XYZ"].projected_annual, by_symbol["XYZ"].yield_on_cost) == (D(0), None)
    assert by_symbol["XYZ"].trailing_12m == D(100)
    assert (by_symbol["LAP"].frequency, by_symbol["LAP"].projected_annual) == (0, D(0))
    assert dividends_by_month(state, "OLD") == {"2022-05": {"USD": D(9)}}
