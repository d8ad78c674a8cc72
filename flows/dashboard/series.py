"""Live period returns from daily closes: the history is chained once a day,
today's close is one more factor per update.

Same conventions as ``flows.portfolio.returns.twr`` and ``price_return``
(a property the tests check against them): a period (start, today] chains
V_d / (V_prev + F) over the closes after the base close (the last close on
or before start), F being the external flows since the previous close; a
sub-period with capital <= 0 is skipped; no close on or before start gives
None (a period longer than the history has no number). Days are UTC day
indexes (epoch ms // 86,400,000).

Cost: ``period_bases`` is O(days) per period and runs once per user per day
(or when a past close or flow changes); ``live_returns`` is O(periods).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal, localcontext
from typing import NamedTuple

from flows.portfolio.money import CTX, ONE, ZERO
from flows.portfolio.returns import flows_between, period_start

PERIODS = ("1m", "3m", "ytd", "1y")
_EPOCH = date(1970, 1, 1)


def day_date(day: int) -> date:
    return _EPOCH + timedelta(days=day)


def date_day(value: date) -> int:
    return (value - _EPOCH).days


class PeriodBase(NamedTuple):
    """Everything about one period that does not depend on today's close."""

    period: str
    start: int  # day whose close is the period's starting value
    has_base: bool  # a close on or before start exists
    factor: Decimal  # chained factor over the closes in (start, last_day]
    last_day: int  # the last close before today (the base close if none after start)
    last_value: Decimal
    pending_flows: Decimal  # flows after last_day and before today
    bench_base: tuple[int, Decimal] | None  # benchmark (day, price) on or before start


class PeriodReturn(NamedTuple):
    period: str
    twr: Decimal | None
    benchmark: Decimal | None
    outperformance: Decimal | None


def _last_on_or_before(days: list[int], day: int) -> int | None:
    at = bisect.bisect_right(days, day)
    return days[at - 1] if at else None


def period_bases(
    closes: Mapping[int, Decimal],
    flows: Mapping[int, Decimal],
    today: int,
    bench: Mapping[int, Decimal] | None = None,
) -> list[PeriodBase]:
    """The fixed part of each period ending ``today``; closes and benchmark
    prices dated today or later are ignored (today's come live)."""
    days = sorted(d for d in closes if d < today)
    flow_days = sorted(flows)
    bench_days = sorted(d for d in bench if d < today) if bench else []
    as_of = day_date(today)
    out = []
    for period in PERIODS:
        start = date_day(period_start(period, as_of, as_of))
        base = _last_on_or_before(days, start)
        bench_day = _last_on_or_before(bench_days, start) if bench else None
        bench_base = None if bench is None or bench_day is None else (bench_day, bench[bench_day])
        if base is None:
            out.append(PeriodBase(period, start, False, ONE, start, ZERO, ZERO, bench_base))
            continue
        factor, previous_day, previous = ONE, base, closes[base]
        with localcontext(CTX):
            for day in days[bisect.bisect_right(days, start) :]:
                capital = previous + flows_between(flows, flow_days, previous_day, day)
                if capital > 0:
                    factor *= closes[day] / capital
                previous_day, previous = day, closes[day]
        pending = flows_between(flows, flow_days, previous_day, today - 1)
        out.append(
            PeriodBase(period, start, True, factor, previous_day, previous, pending, bench_base)
        )
    return out


def live_returns(
    bases: list[PeriodBase],
    value: Decimal,
    today_flows: Decimal,
    bench_now: tuple[int, Decimal] | None,
    scale: Decimal,
) -> list[PeriodReturn]:
    """Cumulative TWR, benchmark price return and their difference per
    period, with today's close ``value`` and flows; rounded to ``scale``."""
    out = []
    with localcontext(CTX):
        for b in bases:
            twr: Decimal | None = None
            if b.has_base:
                capital = b.last_value + b.pending_flows + today_flows
                factor = b.factor * value / capital if capital > 0 else b.factor
                twr = factor - ONE
            bench: Decimal | None = None
            if b.bench_base is not None and bench_now is not None:
                (first_day, first), (last_day, last) = b.bench_base, bench_now
                if last_day > first_day and first > 0:
                    bench = last / first - ONE
            diff = None if twr is None or bench is None else twr - bench
            out.append(
                PeriodReturn(
                    b.period,
                    None if twr is None else twr.quantize(scale),
                    None if bench is None else bench.quantize(scale),
                    None if diff is None else diff.quantize(scale),
                )
            )
    return out
