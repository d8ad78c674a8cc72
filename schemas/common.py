"""Shared field types: exact decimals, UTC timestamps, symbols, currencies.

The same rules are enforced in two places: the pydantic models here (the
contract, used at the edges and for JSON Schema) and the fast validators in
``schemas.fast`` (the hot path). Tests check that both agree.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from schemas.currencies import KNOWN_CURRENCIES

SCHEMA_VERSION = 1

# Largest magnitude and finest scale a price, quantity or amount may have:
# ClickHouse stores them as Decimal(38, 12), Postgres as NUMERIC(38, 12).
MAX_INTEGER_DIGITS = 20
MAX_SCALE = 12
DECIMAL_LIMIT = Decimal(10) ** MAX_INTEGER_DIGITS

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9.\-:/^]{1,20}$")
# Epoch-ms bounds: 1970-01-01 .. 2200-01-01. Anything outside is a unit error
# (seconds or microseconds sent as milliseconds), not a real instant.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
MIN_EPOCH_MS = 0
MAX_EPOCH_MS = 7_258_118_400_000


class ContractError(ValueError):
    """A value breaks the data contract; ``reason`` is a stable short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def to_decimal(value: Any, field: str) -> Decimal:
    """Exact decimal from a JSON string, int or float; NaN, infinity,
    booleans, overflow and excess precision are rejected."""
    if isinstance(value, bool) or value is None:
        raise ContractError("mistyped_field", f"{field} must be a number or numeric string")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        # repr() is the shortest string that round-trips: 101.1 -> "101.1".
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation as exc:
            raise ContractError("mistyped_field", f"{field} is not a number: {value!r}") from exc
    else:
        raise ContractError("mistyped_field", f"{field} must be a number or numeric string")
    if not number.is_finite():
        raise ContractError("non_finite", f"{field} must be finite, got {value!r}")
    if abs(number) >= DECIMAL_LIMIT:
        raise ContractError("overflow", f"{field} exceeds 10^{MAX_INTEGER_DIGITS}")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_SCALE:
        normalized = number.normalize()
        norm_exp = normalized.as_tuple().exponent
        if isinstance(norm_exp, int) and norm_exp < -MAX_SCALE:
            raise ContractError("precision", f"{field} has more than {MAX_SCALE} decimal places")
        number = normalized
    return number


def to_positive_decimal(value: Any, field: str) -> Decimal:
    number = to_decimal(value, field)
    if number <= 0:
        raise ContractError("non_positive", f"{field} must be > 0, got {number}")
    return number


def to_epoch_ms(value: Any, field: str) -> int:
    """Epoch milliseconds from an int or an ISO-8601 string with an offset."""
    if isinstance(value, bool):
        raise ContractError("mistyped_field", f"{field} must be epoch ms or ISO-8601")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ContractError("naive_timestamp", f"{field} has no timezone")
        ms = (value - EPOCH) // _ONE_MS
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ContractError("mistyped_field", f"{field} is not ISO-8601: {value!r}") from exc
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise ContractError("naive_timestamp", f"{field} has no timezone offset: {value!r}")
        ms = (parsed - EPOCH) // _ONE_MS  # exact integer arithmetic, sub-ms truncated
    else:
        raise ContractError("mistyped_field", f"{field} must be epoch ms or ISO-8601")
    if not MIN_EPOCH_MS <= ms <= MAX_EPOCH_MS:
        raise ContractError(
            "timestamp_out_of_range", f"{field}={value!r} is not a plausible instant"
        )
    return ms


def ms_to_datetime(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(moment: datetime) -> int:
    return to_epoch_ms(moment, "timestamp")


def normalize_symbol(value: Any, field: str = "symbol") -> str:
    if not isinstance(value, str):
        raise ContractError("mistyped_field", f"{field} must be a string")
    stripped = value.strip()
    # ASCII first: "ſ".upper() is "S", and a lookalike must not become a symbol.
    symbol = stripped.upper()
    if not stripped.isascii() or not SYMBOL_PATTERN.fullmatch(symbol):
        raise ContractError("invalid_symbol", f"{field} {value!r} is not 1-20 of A-Z 0-9 . - : / ^")
    return symbol


def normalize_currency(value: Any, field: str = "currency") -> str:
    if not isinstance(value, str):
        raise ContractError("mistyped_field", f"{field} must be a string")
    code = value.strip().upper()
    if not value.isascii() or code not in KNOWN_CURRENCIES:
        raise ContractError("unknown_currency", f"{field} {value!r} is not a known currency")
    return code


def _contract(fn: Any, field: str) -> BeforeValidator:
    return BeforeValidator(lambda v: fn(v, field))


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return ms_to_datetime(to_epoch_ms(value, "timestamp"))


_decimal_json = WithJsonSchema(
    {
        "anyOf": [
            {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"},
            {"type": "number"},
        ],
        "description": "Exact decimal; strings preserve every digit. NaN/Infinity rejected.",
    }
)
# Fixed-point text ("0.0000001", never "1E-7") so every consumer can parse it.
_decimal_out = PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json")

ExactDecimal = Annotated[
    Decimal, BeforeValidator(lambda v: to_decimal(v, "value")), _decimal_json, _decimal_out
]
PositiveDecimal = Annotated[
    Decimal, BeforeValidator(lambda v: to_positive_decimal(v, "value")), _decimal_json, _decimal_out
]
UtcDatetime = Annotated[
    datetime,
    BeforeValidator(_utc),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "integer", "description": "epoch milliseconds"},
            ],
            "description": "UTC instant: ISO-8601 with an offset, or epoch ms. Naive rejected.",
        }
    ),
]
Symbol = Annotated[
    str,
    BeforeValidator(normalize_symbol),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": SYMBOL_PATTERN.pattern,
            "description": "Upper-cased on input.",
        }
    ),
]
Currency = Annotated[
    str,
    BeforeValidator(normalize_currency),
    WithJsonSchema({"type": "string", "description": "ISO 4217 code (or BTC/ETH/USDT/USDC)."}),
]
