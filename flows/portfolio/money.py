"""Exact arithmetic shared by the ledger, valuation and income code.

Every derived amount (products, averages, conversions) is rounded half-even
to 12 decimal places, the scale Postgres and ClickHouse store (NUMERIC(38, 12)),
so a value computed here is exactly what a sink writes and what a replay
recomputes. Arithmetic runs in a private 60-digit context: the result never
depends on whatever the caller set as the thread's decimal context.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal

from schemas.common import MAX_SCALE

# 20 integer digits x 12 decimals, multiplied, still fits in 60 significant digits.
CTX = Context(prec=60, rounding=ROUND_HALF_EVEN)
SCALE = Decimal(1).scaleb(-MAX_SCALE)
ZERO = Decimal(0)
ONE = Decimal(1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def q12(value: Decimal) -> Decimal:
    """``value`` rounded half-even to 12 decimal places."""
    return value.quantize(SCALE, context=CTX)


def mul(a: Decimal, b: Decimal) -> Decimal:
    """``a * b`` rounded to 12 places."""
    return q12(CTX.multiply(a, b))


def div(a: Decimal, b: Decimal) -> Decimal:
    """``a / b`` rounded to 12 places; ``b`` must not be zero."""
    return q12(CTX.divide(a, b))


def tidy(value: Decimal) -> Decimal:
    """The same number without trailing zeros, for output: ``100.000000000000``
    becomes ``100`` and any zero becomes plain ``0`` (``0E-12`` would not match
    the contract's decimal-string pattern). Never returns a positive exponent."""
    if not value:
        return ZERO
    normal = value.normalize(CTX)
    exponent = normal.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        return normal.quantize(ONE, context=CTX)
    return normal


def datetime_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime, by integer arithmetic (floored)."""
    return (moment - EPOCH) // _MS


DAY_MS = 86_400_000


def ms_datetime(ms: int) -> datetime:
    """Aware UTC datetime of epoch milliseconds, exactly."""
    return EPOCH + timedelta(milliseconds=ms)


def ms_date(ms: int) -> date:
    """UTC calendar date of epoch milliseconds."""
    return ms_datetime(ms).date()


def month_key(ms: int) -> str:
    """``YYYY-MM`` (UTC) of epoch milliseconds."""
    day = ms_datetime(ms)
    return f"{day.year:04d}-{day.month:02d}"
