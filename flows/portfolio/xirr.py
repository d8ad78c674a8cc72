"""XIRR: the annual rate that makes dated cash flows' net present value zero.

NPV(r) = sum(a_i / (1 + r) ** (days_i / 365)), days counted from the first
flow's date (actual/365, as spreadsheets do). Signs are the investor's:
money put in is negative, money taken out (and a final value) positive.

Solved in floats: Newton's method from ``guess``; if it leaves (-1, inf),
stalls or does not converge in 50 steps, bisection on a bracket found by
doubling the upper bound. Tolerance: the returned rate is within 1e-9
(absolute, as an annual rate) of a root, and is rounded to 10 places. With
unconventional flows (several sign changes) more than one root may exist;
the one reached from ``guess`` (else the lowest bracketed) is returned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from decimal import Decimal

RATE_PLACES = Decimal("1e-10")
_TOLERANCE = 1e-12  # step size at which the iteration stops (well inside 1e-9)
_NEWTON_STEPS = 50
_BISECT_STEPS = 200
_LOWEST = -1.0 + 1e-9
_HIGHEST = 1e9


def _npv(rate: float, times: Sequence[float], amounts: Sequence[float]) -> float:
    base = 1.0 + rate
    try:
        return math.fsum(a * base ** (-t) for t, a in zip(times, amounts, strict=True))
    except OverflowError:
        return math.inf if amounts[-1] > 0 else -math.inf


def _derivative(rate: float, times: Sequence[float], amounts: Sequence[float]) -> float:
    base = 1.0 + rate
    try:
        return math.fsum(-t * a * base ** (-t - 1) for t, a in zip(times, amounts, strict=True))
    except OverflowError:
        return math.nan


def _newton(guess: float, times: Sequence[float], amounts: Sequence[float]) -> float | None:
    rate = guess
    for _ in range(_NEWTON_STEPS):
        slope = _derivative(rate, times, amounts)
        if not math.isfinite(slope) or slope == 0.0:
            return None
        step = _npv(rate, times, amounts) / slope
        rate -= step
        if not math.isfinite(rate) or rate <= -1.0:
            return None
        if abs(step) < _TOLERANCE:
            return rate
    return None


def _bisect(times: Sequence[float], amounts: Sequence[float]) -> float | None:
    low, high = _LOWEST, 1.0
    f_low = _npv(low, times, amounts)
    while (_npv(high, times, amounts) > 0) == (f_low > 0):
        high *= 2.0
        if high > _HIGHEST:
            return None
    for _ in range(_BISECT_STEPS):
        middle = (low + high) / 2.0
        f_middle = _npv(middle, times, amounts)
        if (f_middle > 0) == (f_low > 0):
            low, f_low = middle, f_middle
        else:
            high = middle
        if high - low < _TOLERANCE:
            break
    return (low + high) / 2.0


def xirr(flows: Sequence[tuple[date, Decimal]], guess: float = 0.1) -> Decimal | None:
    """Annual money-weighted return of ``flows``, or None when none exists
    (fewer than one inflow and one outflow, or no root in (-1, 1e9))."""
    cleaned = sorted((day, amount) for day, amount in flows if amount)
    if not any(a > 0 for _, a in cleaned) or not any(a < 0 for _, a in cleaned):
        return None
    first = cleaned[0][0]
    times = [(day - first).days / 365.0 for day, _ in cleaned]
    amounts = [float(amount) for _, amount in cleaned]
    rate = _newton(guess, times, amounts)
    if rate is None:
        rate = _bisect(times, amounts)
    if rate is None:
        return None
    return Decimal(repr(rate)).quantize(RATE_PLACES)
