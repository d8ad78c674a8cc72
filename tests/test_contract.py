"""The data contract: each rejection reason, fast path == pydantic, round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from flows.ingest.encode import candle_message, dead_letter_message, price_message
from flows.ingest.records import CandleRow, PriceRow, Rejection
from schemas import Candle, ConsolidatedPrice, DeadLetter, Tick, Transaction
from schemas.common import ContractError, datetime_to_ms
from schemas.export import export_json_schemas
from schemas.fast import TickRow, decode_tick

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
GOOD = {"symbol": "aapl", "price": "189.25", "ts": "2025-12-31T23:59:59.500Z", "provider": "alpha"}


def decode(doc: object, raw: bytes | None = None) -> TickRow:
    return decode_tick(raw if raw is not None else json.dumps(doc).encode(), NOW, 65536, 60_000)


def reason_of(doc: object = None, raw: bytes | None = None) -> str:
    with pytest.raises(ContractError) as info:
        decode(doc, raw)
    return info.value.reason


def test_good_tick_is_normalised():
    row = decode(GOOD)
    assert row.symbol == "AAPL"
    assert row.price == Decimal("189.25")
    assert row.ts_ms == NOW - 500
    assert row.currency == "USD"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"price": "0"}, "non_positive"),
        ({"price": -3}, "non_positive"),
        ({"price": "NaN"}, "non_finite"),
        ({"price": "-Infinity"}, "non_finite"),
        ({"price": "1e30"}, "overflow"),
        ({"price": "0.0000000000001"}, "precision"),
        ({"price": "abc"}, "mistyped_field"),
        ({"price": True}, "mistyped_field"),
        ({"price": None}, "missing_field"),
        ({"symbol": None}, "missing_field"),
        ({"symbol": "BAD SYMBOL"}, "invalid_symbol"),
        ({"symbol": "X" * 21}, "invalid_symbol"),
        ({"symbol": 42}, "mistyped_field"),
        ({"ts": "2025-12-31T23:59:59"}, "naive_timestamp"),
        ({"ts": "yesterday"}, "mistyped_field"),
        ({"ts": NOW + 3_600_000}, "future_timestamp"),
        ({"ts": 10**16}, "timestamp_out_of_range"),
        ({"currency": "XYZ"}, "unknown_currency"),
        ({"provider": "a b"}, "invalid_provider"),
        ({"volume": "-1"}, "negative_volume"),
        ({"tick_id": 7}, "mistyped_field"),
    ],
)
def test_each_rejection_reason(change: dict[str, object], reason: str):
    assert reason_of({**GOOD, **change}) == reason


def test_decode_level_reasons():
    assert reason_of(raw=b"{not json") == "malformed_json"
    assert reason_of(raw=b'{"price": NaN}') == "missing_field"  # NaN parsed, then fields checked
    assert reason_of(raw=b'{"symbol":"A","price":NaN,"ts":1,"provider":"p"}') == "non_finite"
    assert reason_of(raw=b"[1, 2]") == "not_an_object"
    assert reason_of(raw=b" " * 70_000) == "oversize"


def test_long_float_literal_keeps_every_digit():
    raw = b'{"symbol":"A","price":12345.678901234567,"ts":1,"provider":"p"}'
    assert decode(None, raw).price == Decimal("12345.678901234567")


_prices = st.one_of(
    st.decimals(min_value=Decimal("-5"), max_value=Decimal("1e6"), places=4).map(str),
    st.sampled_from(["NaN", "Infinity", "1e25", "0", "x", "", "0.0000000000001"]),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-10, max_value=1e6),
    st.integers(min_value=-5, max_value=10**9),
)
_timestamps = st.one_of(
    st.integers(min_value=-10, max_value=NOW + 10**6),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
)


@settings(max_examples=300, deadline=None)
@given(
    symbol=st.sampled_from(["aapl", "BRK.B", "^GSPC", "EURUSD", "", "bad sym", "é"]),
    price=_prices,
    ts=_timestamps,
    currency=st.sampled_from([None, "usd", "EUR", "XYZ"]),
)
def test_fast_path_agrees_with_pydantic(symbol, price, ts, currency):
    doc = {"symbol": symbol, "price": price, "ts": ts, "provider": "alpha"}
    if currency is not None:
        doc["currency"] = currency
    raw = json.dumps(doc).encode()
    try:
        fast = decode_tick(raw, 2**62, 65536, 2**62)
    except ContractError:
        fast = None
    try:
        model = Tick.model_validate_json(raw)
    except ValidationError:
        model = None
    assert (fast is None) == (model is None)
    if fast is not None and model is not None:
        assert (fast.symbol, fast.price, fast.currency) == (
            model.symbol,
            model.price,
            model.currency,
        )
        assert fast.ts_ms == datetime_to_ms(model.ts)


def test_transaction_rules():
    base = {"txn_id": "t1", "portfolio_id": "p1", "user_id": "u1", "executed_at": NOW}
    buy = Transaction.model_validate(
        {**base, "type": "BUY", "symbol": "a", "quantity": "2", "price": 3}
    )
    assert buy.symbol == "A"
    assert buy.fees == 0
    with pytest.raises(ValidationError, match="DIVIDEND needs amount"):
        Transaction.model_validate({**base, "type": "DIVIDEND", "symbol": "A"})
    with pytest.raises(ValidationError):
        Transaction.model_validate({**base, "type": "GIFT", "amount": 1})
    with pytest.raises(ValidationError):
        Transaction.model_validate({**base, "type": "SPLIT", "symbol": "A", "ratio": "0"})
    with pytest.raises(ValidationError):
        Transaction.model_validate(
            {**base, "type": "DEPOSIT", "amount": 1, "executed_at": "2026-01-01T00:00:00"}
        )


def test_output_messages_validate_against_the_contract():
    price = PriceRow("AAPL", Decimal("1.5"), NOW, "alpha", "USD", None)
    key, value = price_message(price)
    parsed = ConsolidatedPrice.model_validate_json(value)
    assert key == "AAPL"
    assert parsed.version == NOW
    assert parsed.ts == datetime(2026, 1, 1, tzinfo=UTC)

    one, three, two, ten = Decimal(1), Decimal(3), Decimal(2), Decimal(10)
    candle = CandleRow("AAPL", NOW, NOW + 60_000, one, three, one, two, ten, 4, "USD", 1)
    assert Candle.model_validate_json(candle_message(candle)[1]).close == Decimal(2)

    rejection = Rejection("late", "detail", "candles", "market.ticks", 3, 99, b"AAPL", b"\xff{}")
    key, value = dead_letter_message(rejection, NOW)
    letter = DeadLetter.model_validate_json(value)
    assert key == "market.ticks/3/99" == letter.dlq_key
    assert (letter.partition, letter.offset, letter.reason) == (3, 99, "late")


def test_decimal_round_trip_is_exact():
    tick = Tick.model_validate({**GOOD, "price": "0.000000000001"})
    again = Tick.model_validate_json(tick.model_dump_json())
    assert again.price == Decimal("0.000000000001")
    assert orjson.loads(tick.model_dump_json())["price"] == "0.000000000001"


def test_json_schema_export(tmp_path: Path):
    written = export_json_schemas(tmp_path)
    names = {p.name for p in written}
    assert "market.ticks.schema.json" in names
    assert "pipeline.dlq.schema.json" in names
    tick_schema = json.loads((tmp_path / "market.ticks.schema.json").read_text())
    assert set(tick_schema["required"]) == {"symbol", "price", "ts", "provider"}
    assert tick_schema["x-kafka-key"] == "symbol"
