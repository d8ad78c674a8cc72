"""Exact arithmetic for alert values, independent of the caller's decimal
context. Derived percentages are rounded half-even to 6 places, and the
rounded value is both what a rule compares and what the alert reports."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal

CTX = Context(prec=60, rounding=ROUND_HALF_EVEN)
ZERO = Decimal(0)
HUNDRED = Decimal(100)
THOUSAND = Decimal(1000)
_PCT_PLACES = Decimal("0.000001")
_SHOW_PLACES = Decimal("0.01")


def q6(value: Decimal) -> Decimal:
    return value.quantize(_PCT_PLACES, context=CTX)


def percent_change(start: Decimal, end: Decimal) -> Decimal:
    """(end - start) / start in percent, 6 places; ``start`` must be > 0."""
    return q6(CTX.multiply(CTX.divide(CTX.subtract(end, start), start), HUNDRED))


def percent_of(part: Decimal, whole: Decimal) -> Decimal:
    """part / whole in percent, 6 places; ``whole`` must not be 0."""
    return q6(CTX.multiply(CTX.divide(part, whole), HUNDRED))


def seconds(ms: int) -> Decimal:
    """Milliseconds as exact seconds."""
    return CTX.divide(Decimal(ms), THOUSAND)


def plain(value: Decimal) -> str:
    """A decimal as written, never in exponent notation: ``Decimal('1E+2')``
    -> ``100``; ``Decimal('200.00')`` stays ``200.00``."""
    return format(value, "f")


def show_pct(value: Decimal) -> str:
    """A percentage for messages: 2 places, trailing ``.00`` kept."""
    return str(value.quantize(_SHOW_PLACES, context=CTX))


def duration(ms: int) -> str:
    """``60000`` -> ``1m``; units only when they divide exactly."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
