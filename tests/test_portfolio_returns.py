"""TWR, XIRR and period returns on hand-checked cases (arithmetic in comments)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from flows.portfolio import CashFlow, FxConverter, daily_flows, performance, xirr
from flows.portfolio.returns import months_before, mwr, period_start, price_return, twr

D = Decimal
TOLERANCE = D("1e-9")  # xirr's documented accuracy


def close_to(value: Decimal | None, expected: float) -> bool:
    return value is not None and abs(value - D(repr(expected))) <= TOLERANCE


def test_twr_removes_a_deposit_made_at_the_start_of_a_day() -> None:
    values = {date(2024, 1, 1): D(1000), date(2024, 1, 2): D(1100), date(2024, 1, 3): D(1650)}
    flows = {date(2024, 1, 3): D(500)}
    # day 2: 1100 / 1000 = 1.1; day 3: 1650 / (1100 + 500) = 1.03125
    # TWR = 1.1 x 1.03125 - 1 = 0.134375 (the deposit itself is not return)
    assert twr(values, flows, date(2024, 1, 1), date(2024, 1, 3)) == D("0.134375")


def test_twr_over_a_gap_and_after_a_full_withdrawal() -> None:
    values = {
        date(2024, 1, 1): D(1000),
        date(2024, 1, 3): D(1210),  # 1/2 missing: its flow joins the sub-period ending 1/3
        date(2024, 1, 4): D(0),  # everything withdrawn at the start of 1/4
        date(2024, 1, 5): D(550),
    }
    flows = {date(2024, 1, 2): D(100), date(2024, 1, 4): D(-1210), date(2024, 1, 5): D(500)}
    # (1/1, 1/3]: 1210 / (1000 + 100) = 1.1
    # (1/3, 1/4]: capital 1210 - 1210 = 0: nothing at risk, skipped
    # (1/4, 1/5]: 550 / (0 + 500) = 1.1
    # TWR = 1.1 x 1.1 - 1 = 0.21
    assert twr(values, flows, date(2024, 1, 1), date(2024, 1, 5)) == D("0.21")


def test_flows_after_the_base_close_but_before_the_start_count() -> None:
    values = {date(2024, 1, 1): D(1000), date(2024, 1, 5): D(1650)}
    flows = {date(2024, 1, 3): D(500)}
    # period from 1/4: base close is 1/1; the 1/3 deposit joins the first
    # sub-period: 1650 / (1000 + 500) - 1 = 0.1
    assert twr(values, flows, date(2024, 1, 4), date(2024, 1, 5)) == D("0.1")
    # MWR is the XIRR of -1000 (1/1), -500 (1/3), +1650 (1/5): its NPV is 0
    rate = mwr(values, flows, date(2024, 1, 4), date(2024, 1, 5))
    assert rate is not None
    r = float(rate)
    npv = -1000 - 500 / (1 + r) ** (2 / 365) + 1650 / (1 + r) ** (4 / 365)
    assert abs(npv) < 1e-4


def test_twr_needs_a_starting_close_unless_from_zero() -> None:
    values = {date(2024, 1, 2): D(1010)}
    flows = {date(2024, 1, 2): D(1000)}
    assert twr(values, flows, date(2024, 1, 1), date(2024, 1, 2)) is None
    # from zero: 1010 / (0 + 1000) - 1 = 0.01
    assert twr(values, flows, date(2024, 1, 1), date(2024, 1, 2), from_zero=True) == D("0.01")


def test_xirr_hand_checked_cases() -> None:
    # 1000 grows to 1100 in exactly 365 days: 10%
    assert close_to(xirr([(date(2023, 1, 1), D(-1000)), (date(2024, 1, 1), D(1100))]), 0.1)
    # -1000 - 1000 / 1.1 + 2310 / 1.21 = -1000 - 909.0909 + 1909.0909 = 0 at r = 10%
    flows = [
        (date(2021, 1, 1), D(-1000)),
        (date(2022, 1, 1), D(-1000)),
        (date(2023, 1, 1), D(2310)),
    ]
    assert close_to(xirr(flows), 0.1)
    # 1000 -> 1 in a year: r = 1/1000 - 1 = -0.999. Newton from 0.1 jumps below -1
    # (first step 0.1 - (-999.09 / -0.826) ~ -1209), so bisection finds it.
    assert close_to(xirr([(date(2023, 1, 1), D(-1000)), (date(2024, 1, 1), D(1))]), -0.999)


def test_xirr_has_no_answer_without_both_signs_or_time() -> None:
    assert xirr([(date(2023, 1, 1), D(-1)), (date(2024, 1, 1), D(-1))]) is None
    assert xirr([(date(2023, 1, 1), D(-1)), (date(2023, 1, 1), D(2))]) is None
    assert xirr([]) is None


def test_mwr_weights_money_by_time_invested() -> None:
    values = {date(2021, 1, 1): D(1000), date(2023, 1, 1): D(2310)}
    flows = {date(2022, 1, 1): D(1000)}  # a second 1000 a year later
    # XIRR of -1000 (2021), -1000 (2022), +2310 (2023) = 10%, as above
    assert close_to(mwr(values, flows, date(2021, 1, 1), date(2023, 1, 1)), 0.1)


def test_calendar_arithmetic_clamps_to_month_end() -> None:
    assert months_before(date(2024, 3, 31), 1) == date(2024, 2, 29)
    assert months_before(date(2023, 3, 31), 1) == date(2023, 2, 28)
    assert months_before(date(2024, 1, 15), 1) == date(2023, 12, 15)
    assert months_before(date(2024, 2, 29), 12) == date(2023, 2, 28)
    assert period_start("ytd", date(2024, 3, 31), date(2020, 1, 1)) == date(2023, 12, 31)
    with pytest.raises(ValueError):
        period_start("2w", date(2024, 3, 31), date(2020, 1, 1))


def test_performance_over_all_periods_against_a_benchmark() -> None:
    values = {
        date(2023, 3, 31): D(100),  # inception: 100 deposited that day
        date(2023, 12, 31): D(120),
        date(2024, 2, 29): D(126),
        date(2024, 3, 31): D("132.3"),
    }
    flows = {date(2023, 3, 31): D(100)}
    bench = {
        date(2023, 3, 31): D(400),
        date(2023, 12, 29): D(440),
        date(2024, 2, 29): D(450),
        date(2024, 3, 28): D(459),
    }
    out = performance(values, flows, date(2024, 3, 31), bench)
    assert list(out) == ["1m", "3m", "ytd", "1y", "inception"]
    # 1m from 2024-02-29: 132.3 / 126 - 1 = 0.05; benchmark 459 / 450 - 1 = 0.02
    assert (out["1m"].twr, out["1m"].benchmark, out["1m"].outperformance) == (
        D("0.05"), D("0.02"), D("0.03"),
    )  # fmt: skip
    # 3m and YTD from 2023-12-31: 132.3 / 120 - 1 = 0.1025; benchmark from the
    # last price on or before it (12-29): 459 / 440 - 1 = 0.0431818181818... -> 12 places
    for period in ("3m", "ytd"):
        assert out[period].twr == D("0.1025")
        assert out[period].benchmark == D("0.043181818182")
    # 1y from 2023-03-31: 120/100 x 126/120 x 132.3/126 - 1 = 0.323; benchmark 459/400 - 1
    assert (out["1y"].twr, out["1y"].benchmark) == (D("0.323"), D("0.1475"))
    # inception from zero: 100 / (0 + 100) on day one, then as 1y; no benchmark price before
    assert out["inception"].twr == D("0.323")
    assert out["inception"].benchmark is None and out["inception"].outperformance is None
    # MWR: -100 on 2023-03-31, +132.3 on 2024-03-31 (366 days): 1.323 ** (365 / 366) - 1
    expected = 1.323 ** (365 / 366) - 1
    assert close_to(out["1y"].mwr_annualized, expected)
    assert close_to(out["inception"].mwr_annualized, expected)


def test_a_period_longer_than_the_history_is_not_computed() -> None:
    values = {date(2024, 1, 10): D(100), date(2024, 3, 31): D(110)}
    out = performance(values, {}, date(2024, 3, 31))
    assert out["1y"].twr is None and out["1y"].mwr_annualized is None
    assert out["ytd"].twr is None  # no close on or before 2023-12-31
    assert out["1m"].twr == D("0.1")  # base: last close on or before 02-29 is 01-10
    assert performance({}, {}, date(2024, 3, 31))["inception"].twr is None


def test_price_return_uses_last_prices_on_or_before() -> None:
    prices = {date(2024, 1, 1): D(50), date(2024, 1, 5): D(55)}
    assert price_return(prices, date(2024, 1, 3), date(2024, 1, 9)) == D("0.1")
    assert price_return(prices, date(2023, 12, 31), date(2024, 1, 9)) is None
    assert price_return(prices, date(2024, 1, 5), date(2024, 1, 6)) is None


def test_daily_flows_convert_or_report() -> None:
    day_ms = 1_704_067_200_000  # 2024-01-01T00:00Z
    flows = [
        CashFlow(day_ms, "USD", D(100), "a"),
        CashFlow(day_ms + 3_600_000, "EUR", D(-10), "b"),  # x 1.1 = -11
        CashFlow(day_ms + 86_400_000, "JPY", D(500), "c"),
    ]
    by_day, unconverted = daily_flows(flows, FxConverter({"EURUSD": D("1.1")}, "USD"))
    assert by_day == {date(2024, 1, 1): D(89)}
    assert unconverted == {"JPY": D(500)}
