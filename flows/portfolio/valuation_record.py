"""``ValuationRecord``: what the valuation hot path emits instead of a
pydantic ``schemas.valuation.Valuation``.

A record carries the fields sinks index on (ids, window, totals, version)
plus ``json``: the contract document, already serialised. Guarantees:

- ``Valuation.model_validate_json(record.json)`` succeeds and equals the
  model the reference ``flows.portfolio.valuation.value`` builds for the
  same inputs (a property test checks it); ``to_model()`` does exactly that.
- The numeric fields are the document's values, digit for digit.
- Decimals in ``json`` are fixed-point text without trailing zeros
  (``decimal_text``); timestamps are ISO-8601 UTC with milliseconds.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import orjson

from flows.portfolio.money import ms_datetime
from schemas.valuation import Valuation


class ValuationRecord(NamedTuple):
    """One portfolio's valuation at the close of a window (base currency).

    ``market_value`` = ``holdings_value`` + ``cash`` (the contract's
    meaning); ``version`` = ``window_end_ms``.
    """

    portfolio_id: str
    user_id: str
    base_currency: str
    window_start_ms: int
    window_end_ms: int
    market_value: Decimal
    holdings_value: Decimal
    cash: Decimal
    cost_basis: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    day_change: Decimal | None
    version: int
    json: bytes

    @property
    def window_start(self) -> datetime:
        return ms_datetime(self.window_start_ms)

    @property
    def window_end(self) -> datetime:
        return ms_datetime(self.window_end_ms)

    def to_model(self) -> Valuation:
        """The contract model (validates ``json``; off the hot path only)."""
        return Valuation.model_validate_json(self.json)

    def weights(self) -> dict[str, Decimal]:
        """Symbol -> weight (a fraction) of each priced, converted position,
        read from ``json`` (a parse: call it only when needed)."""
        positions = orjson.loads(self.json)["positions"]
        return {p["symbol"]: Decimal(p["weight"]) for p in positions if p["weight"] is not None}


def decimal_text(value: Decimal) -> str:
    """``value`` as the contract writes it: fixed-point, no exponent, no
    trailing zeros, any zero as ``0``; equal to ``format(tidy(value), "f")``.

    ``str`` is tried first because it is several times cheaper than
    ``format`` and is already fixed-point for every exponent <= 0 with
    ``adjusted() >= -6`` (the common case for money); stripping is skipped
    when there is nothing to strip.
    """
    if not value:
        return "0"
    text = str(value)
    if "E" in text:
        text = format(value, "f")
    if text[-1] == "0" and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def exponent(value: Decimal) -> int:
    """The exponent of a finite ``value`` (``Decimal("1.50")`` -> -2)."""
    exp = value.as_tuple().exponent
    assert isinstance(exp, int), f"not a finite decimal: {value!r}"
    return exp


def iso_ms(ms: int) -> str:
    """``2023-11-14T22:14:20.000Z`` for epoch milliseconds."""
    moment = ms_datetime(ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
