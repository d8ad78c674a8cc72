"""Hot-path decoding of ``market.ticks``: the same rules as ``schemas.Tick``
at a fraction of pydantic's cost per message (tests check they agree).

Returns compact rows so flows carry small objects; timestamps are epoch ms.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from schemas.common import (
    ContractError,
    normalize_currency,
    normalize_symbol,
    to_decimal,
    to_epoch_ms,
    to_positive_decimal,
)

MAX_PROVIDER_LEN = 40
MAX_TICK_ID_LEN = 128
_PROVIDER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
# A float with this many significant digits may not be what the sender wrote.
_FLOAT_SAFE_DIGITS = 15


class TickRow(NamedTuple):
    symbol: str
    price: Decimal
    ts_ms: int
    provider: str
    volume: Decimal | None
    currency: str
    tick_id: str | None


def decode_json(raw: bytes, max_bytes: int) -> Any:
    """Bytes to JSON with exact decimals; NaN/Infinity survive so they can be
    rejected with their own reason rather than as malformed JSON."""
    if len(raw) > max_bytes:
        raise ContractError("oversize", f"{len(raw)} bytes > {max_bytes}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = _decode_slow(raw)
    if isinstance(data, dict) and any(_imprecise(v) for v in data.values()):
        data = _decode_slow(raw)
    return data


def _decode_slow(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_float=Decimal, parse_constant=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError("malformed_json", str(exc)[:200]) from exc


def _imprecise(value: Any) -> bool:
    if not isinstance(value, float):
        return False
    digits = repr(value).lstrip("-").split("e")[0].replace(".", "").lstrip("0")
    return len(digits) > _FLOAT_SAFE_DIGITS


def _required(data: dict[str, Any], field: str) -> Any:
    value = data.get(field)
    if value is None:
        raise ContractError("missing_field", f"{field} is required")
    return value


def _provider(value: Any) -> str:
    if not isinstance(value, str):
        raise ContractError("mistyped_field", "provider must be a string")
    if not 1 <= len(value) <= MAX_PROVIDER_LEN or not _PROVIDER_CHARS.issuperset(value):
        raise ContractError("invalid_provider", f"provider {value!r} is not 1-40 of A-Za-z0-9_.-")
    return value


def tick_from_json(data: Any, now_ms: int, max_future_ms: int) -> TickRow:
    """Validate one decoded tick; raise ``ContractError`` with the reason."""
    if not isinstance(data, dict):
        raise ContractError("not_an_object", f"expected a JSON object, got {type(data).__name__}")
    symbol = normalize_symbol(_required(data, "symbol"))
    price = to_positive_decimal(_required(data, "price"), "price")
    ts_ms = to_epoch_ms(_required(data, "ts"), "ts")
    if ts_ms > now_ms + max_future_ms:
        raise ContractError("future_timestamp", f"ts is {ts_ms - now_ms} ms in the future")
    provider = _provider(_required(data, "provider"))
    volume_raw = data.get("volume")
    volume = None if volume_raw is None else to_decimal(volume_raw, "volume")
    if volume is not None and volume < 0:
        raise ContractError("negative_volume", f"volume must be >= 0, got {volume}")
    currency_raw = data.get("currency")
    currency = "USD" if currency_raw is None else normalize_currency(currency_raw)
    tick_id = data.get("tick_id")
    if tick_id is not None and (
        not isinstance(tick_id, str) or not 1 <= len(tick_id) <= MAX_TICK_ID_LEN
    ):
        raise ContractError("mistyped_field", "tick_id must be a string of 1-128 characters")
    return TickRow(symbol, price, ts_ms, provider, volume, currency, tick_id)


def decode_tick(raw: bytes, now_ms: int, max_bytes: int, max_future_ms: int) -> TickRow:
    return tick_from_json(decode_json(raw, max_bytes), now_ms, max_future_ms)
