"""Time- and money-weighted returns from daily closes and external flows.

Inputs, all in the portfolio's base currency:

- ``values``: date -> closing value (``Valuation.market_value``, cash included) that day.
- ``flows``: date -> net external cash flow that day (+ deposit, - withdrawal).

Flow-timing convention: a flow dated ``d`` happens at the START of day ``d``,
before that day's market moves, so it is part of the capital at risk that
day. If days between two closes are missing, the flows dated after the
earlier close and up to the later one are treated as happening at the start
of that (longer) sub-period.

TWR: chain the sub-period factors V_d / (V_prev + F_d) over consecutive
closes; the result is cumulative over the period (not annualized), exact
Decimal rounded to 12 places. A sub-period whose starting capital
V_prev + F_d is <= 0 has no capital at risk and is skipped (factor 1).

MWR: XIRR (``flows.portfolio.xirr``, annualized) of: -V at the base close,
-F on each flow date, +V at the last close.

A period (start, end] is measured from the base close (the last on or before
``start``) to the last close on or before ``end``; flows after the base
close count. Since inception starts from a value of zero before the first
close and counts every flow up to it. A period longer than the history gives None
(not a shorter period's number under a longer period's name).
"""

from __future__ import annotations

import bisect
import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, localcontext
from typing import TypeVar

from flows.portfolio.fx import FxConverter
from flows.portfolio.money import CTX, ONE, ZERO, ms_date, q12
from flows.portfolio.records import CashFlow
from flows.portfolio.xirr import xirr

Day = TypeVar("Day", date, int)  # calendar dates, or day numbers

PERIODS = ("1m", "3m", "ytd", "1y", "inception")


@dataclass(frozen=True, slots=True)
class PeriodReturn:
    """Returns over (start, end]; None where not computable."""

    period: str
    start: date
    end: date
    twr: Decimal | None
    mwr_annualized: Decimal | None
    benchmark: Decimal | None  # price return of the benchmark over the same dates
    outperformance: Decimal | None  # twr - benchmark


def months_before(day: date, months: int) -> date:
    """Same day ``months`` calendar months earlier, clamped to the month's end
    (2024-03-31 minus 1 month is 2024-02-29)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def period_start(period: str, as_of: date, inception: date) -> date:
    """The date whose close is the period's starting value."""
    if period == "1m":
        return months_before(as_of, 1)
    if period == "3m":
        return months_before(as_of, 3)
    if period == "ytd":
        return date(as_of.year - 1, 12, 31)
    if period == "1y":
        return months_before(as_of, 12)
    if period == "inception":
        return inception - timedelta(days=1)
    raise ValueError(f"unknown period {period!r}; expected one of {PERIODS}")


def _last_on_or_before(days: list[date], day: date) -> date | None:
    at = bisect.bisect_right(days, day)
    return days[at - 1] if at else None


def _window(
    values: Mapping[date, Decimal], start: date, end: date, from_zero: bool
) -> tuple[list[date], date | None] | None:
    """Closes in (start, end] and the base close (the last on or before
    ``start``; None: start from zero). Flows after the base close count,
    even those dated before ``start``: nothing else would account for them."""
    days = sorted(values)
    base = _last_on_or_before(days, start)
    if base is None and not from_zero:
        return None
    low = bisect.bisect_right(days, start)
    high = bisect.bisect_right(days, end)
    if low >= high:
        return None
    return days[low:high], base


def twr(
    values: Mapping[date, Decimal],
    flows: Mapping[date, Decimal],
    start: date,
    end: date,
    from_zero: bool = False,
) -> Decimal | None:
    """Cumulative time-weighted return over (start, end]; ``from_zero`` lets a
    period with no close on or before ``start`` begin from a zero value."""
    window = _window(values, start, end, from_zero)
    if window is None:
        return None
    closes, base = window
    flow_days = sorted(flows)
    previous_day, previous = (base, values[base]) if base is not None else (date.min, ZERO)
    factor = ONE
    with localcontext(CTX):
        for day in closes:
            capital = previous + flows_between(flows, flow_days, previous_day, day)
            if capital > 0:
                factor *= values[day] / capital
            previous_day, previous = day, values[day]
        return q12(factor - ONE)


def flows_between(
    flows: Mapping[Day, Decimal], flow_days: list[Day], after: Day, upto: Day
) -> Decimal:
    """Sum of the flows dated in (after, upto]; ``flow_days`` is ``sorted(flows)``."""
    low = bisect.bisect_right(flow_days, after)
    high = bisect.bisect_right(flow_days, upto)
    return sum((flows[day] for day in flow_days[low:high]), ZERO)


def mwr(
    values: Mapping[date, Decimal],
    flows: Mapping[date, Decimal],
    start: date,
    end: date,
    from_zero: bool = False,
) -> Decimal | None:
    """Annualized money-weighted return (XIRR) over (start, end]."""
    window = _window(values, start, end, from_zero)
    if window is None:
        return None
    closes, base = window
    last = closes[-1]
    cash: list[tuple[date, Decimal]] = []
    if base is not None:
        cash.append((base, -values[base]))
    after = base if base is not None else date.min
    cash.extend((day, -amount) for day, amount in flows.items() if after < day <= last)
    cash.append((last, values[last]))
    return xirr(cash)


def price_return(prices: Mapping[date, Decimal], start: date, end: date) -> Decimal | None:
    """P_end / P_start - 1 using the last prices on or before each date."""
    days = sorted(prices)
    first, last = _last_on_or_before(days, start), _last_on_or_before(days, end)
    if first is None or last is None or last <= first or prices[first] <= 0:
        return None
    with localcontext(CTX):
        return q12(prices[last] / prices[first] - ONE)


def performance(
    values: Mapping[date, Decimal],
    flows: Mapping[date, Decimal],
    as_of: date,
    benchmark: Mapping[date, Decimal] | None = None,
) -> dict[str, PeriodReturn]:
    """TWR, MWR, benchmark return and outperformance for every period in
    ``PERIODS`` ending ``as_of``. Empty ``values`` gives all-None results."""
    inception = min(values) if values else as_of
    out: dict[str, PeriodReturn] = {}
    for period in PERIODS:
        start = period_start(period, as_of, inception)
        from_zero = period == "inception"
        time_weighted = twr(values, flows, start, as_of, from_zero)
        bench = price_return(benchmark, start, as_of) if benchmark is not None else None
        out[period] = PeriodReturn(
            period=period,
            start=start,
            end=as_of,
            twr=time_weighted,
            mwr_annualized=mwr(values, flows, start, as_of, from_zero),
            benchmark=bench,
            outperformance=(
                None if time_weighted is None or bench is None else time_weighted - bench
            ),
        )
    return out


def daily_flows(
    cash_flows: Iterable[CashFlow], fx: FxConverter
) -> tuple[dict[date, Decimal], dict[str, Decimal]]:
    """Net external flows per UTC day in ``fx.target``, plus what could not be
    converted, per currency. Converts at ``fx``'s (current) rates: exact for
    flows in the base currency, an approximation for others."""
    by_day: dict[date, Decimal] = {}
    unconverted: dict[str, Decimal] = {}
    for flow in cash_flows:
        amount = fx.convert(flow.amount, flow.currency)
        if amount is None:
            unconverted[flow.currency] = unconverted.get(flow.currency, ZERO) + flow.amount
            continue
        day = ms_date(flow.ms)
        by_day[day] = by_day.get(day, ZERO) + amount
    return by_day, unconverted
