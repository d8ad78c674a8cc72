"""Ingest hot paths agree exactly with their reference implementations:
``TickDecoder`` with ``decode_tick``; snapshots are independent copies."""

from __future__ import annotations

import json
import pickle
from collections import deque
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.ingest.candles import CandleBuilder
from flows.ingest.consolidate import Consolidator
from flows.ingest.dedup import Deduplicator, DedupSnapshot, KeyBatch, resume
from flows.ingest.encode import (
    dec,
    dec_fast,
    iso,
    iso_fast,
    latest_prices,
    price_doc,
    price_json,
    price_message,
    price_messages,
    price_row,
)
from flows.ingest.records import PriceRow, SourcedTick
from schemas.common import ContractError
from schemas.fast import TickDecoder, TickRow, decode_tick
from sinks.redis.prices import latest_per_symbol

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MAX_BYTES = 4096
FUTURE = 60_000


def outcome(decode: Any, raw: bytes) -> tuple[Any, ...]:
    """(row fields with Decimal text, so 1.50 != 1.5) or the rejection reason."""
    try:
        row = decode(raw)
    except ContractError as exc:
        return ("rejected", exc.reason)
    return tuple(str(v) if isinstance(v, Decimal) else v for v in row)


def assert_same(decoder: TickDecoder, raw: bytes) -> None:
    fast = outcome(lambda r: decoder.decode(r, NOW), raw)
    reference = outcome(lambda r: decode_tick(r, NOW, MAX_BYTES, FUTURE), raw)
    assert fast == reference, raw


GOOD: dict[str, Any] = {
    "symbol": "aapl",
    "price": "189.2500",
    "ts": "2025-12-31T23:59:59.500Z",
    "provider": "alpha",
    "volume": 300,
    "currency": "usd",
    "tick_id": "alpha-1",
}
NUMBERS: list[Any] = [
    "189.25",
    "0",
    "0.000",
    "1.500",
    "007.5",
    " 12.5",
    "12.5 ",
    "+3",
    "-3",
    "-0",
    "1e2",
    "1E-7",
    "1_000",
    "NaN",
    "Infinity",
    "abc",
    "",
    "0.0000000000001",
    "1.000000000000",
    "1.0000000000000",
    "99999999999999999999",
    "100000000000000000000",
    "١٢٣",
    "5.",
    ".5",
    0,
    5,
    -5,
    10**20 - 1,
    10**20,
    101.1,
    0.30000000000000004,
    1e300,
    None,
    True,
    [],
    {},
]
TIMESTAMPS: list[Any] = [
    "2025-12-31T23:59:59.500Z",
    "2025-12-31T23:59:59.500+00:00",
    "2025-12-31T23:59:59",
    "2021-01-01T00:00:00.0019995+00:00",
    "2021-01-01Z00:00:00+00:00",
    "2021-01-01T00:00Z",
    " 2021-01-01T00:00Z",
    "2021-01-01T00:00:00+05:30",
    "2021-01-01T00:00:00z",
    "2199-12-31T23:59:59.999Z",
    "2200-01-01T00:00:00.001Z",
    "1969-12-31T23:59:59.999Z",
    "2026-01-01T00:01:00.001Z",
    "2026-01-01T00:00:59.999Z",
    "2021-02-30T00:00:00Z",
    "20210101T000000Z",
    "2021-01-01T00:00:00Z ",
    "nope",
    "",
    0,
    -1,
    7_258_118_400_000,
    7_258_118_400_001,
    NOW + FUTURE,
    NOW + FUTURE + 1,
    1.5,
    True,
    None,
    [],
]
TEXTS: list[Any] = [
    "aapl",
    " BRK.B ",
    "^GSPC",
    "",
    "bad sym",
    "é",
    "ſ",
    "x" * 21,
    42,
    None,
    ["x"],
    1.5,
]
PROVIDERS: list[Any] = ["alpha", "beta-2", "", "bad provider", "x" * 41, 7, None, {}]
CURRENCIES: list[Any] = [None, "usd", "EUR", " eur ", "XYZ", 5, [], "€", True]
TICK_IDS: list[Any] = [None, "t-1", "", "x" * 128, "x" * 129, 12, ["a"], False]
VALUES: dict[str, list[Any]] = {
    "symbol": TEXTS,
    "price": NUMBERS,
    "ts": TIMESTAMPS,
    "provider": PROVIDERS,
    "volume": NUMBERS,
    "currency": CURRENCIES,
    "tick_id": TICK_IDS,
}
CASES = [(field, value) for field, values in VALUES.items() for value in values]


@pytest.mark.parametrize(("field", "value"), CASES)
def test_decoder_agrees_field_by_field(field: str, value: Any) -> None:
    decoder = TickDecoder(MAX_BYTES, FUTURE)
    assert_same(decoder, json.dumps({**GOOD, field: value}).encode())
    without = {k: v for k, v in GOOD.items() if k != field}
    assert_same(decoder, json.dumps(without).encode())


@settings(max_examples=300, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(sorted(VALUES)), st.integers(0, 40), max_size=3))
def test_decoder_agrees_on_combinations(changes: dict[str, int]) -> None:
    doc = dict(GOOD)
    for field, pick in changes.items():
        doc[field] = VALUES[field][pick % len(VALUES[field])]
    decoder = TickDecoder(MAX_BYTES, FUTURE)
    raw = json.dumps(doc).encode()
    assert_same(decoder, raw)
    assert_same(decoder, raw)  # the second time from the caches


def test_decoder_takes_the_fast_path_for_canonical_ticks() -> None:
    decoder = TickDecoder(MAX_BYTES, FUTURE)
    for doc in (GOOD, {**GOOD, "ts": NOW - 1, "price": 7, "volume": "1.5"}):
        raw = json.dumps(doc).encode()
        assert decoder._fast(raw, NOW) == decode_tick(raw, NOW, MAX_BYTES, FUTURE)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"symbol":"A","price":"1","ts":1,"provider":"p","x":0.30000000000000004}',
        b'{"symbol":"A","price":0.30000000000000004,"ts":1,"provider":"p"}',
        b'{"symbol":"A","price":NaN,"ts":1,"provider":"p"}',
        b'{"symbol":"A","price":"1","ts":1,"provider":"p","volume":123456789012345678901234}',
        b'{"symbol":"A","price":"1","ts":1,"provider":"p"',
        b"[1, 2]",
        b"null",
        b'"text"',
        b"\xff\xfe",
        b'{"symbol":"A","price":"1","ts":1,"provider":"p","pad":"' + b"x" * MAX_BYTES + b'"}',
    ],
)
def test_decoder_agrees_on_odd_input(raw: bytes) -> None:
    assert_same(TickDecoder(MAX_BYTES, FUTURE), raw)


def test_decoder_caches_stay_bounded_and_correct() -> None:
    decoder = TickDecoder(MAX_BYTES, FUTURE, cache_size=3)
    for n in range(20):
        doc = {"symbol": f"s{n}", "price": "1.5", "ts": NOW, "provider": f"p{n}", "volume": n}
        raw = json.dumps(doc).encode()
        assert decoder.decode(raw, NOW) == TickRow(
            f"S{n}", Decimal("1.5"), NOW, f"p{n}", Decimal(n), "USD", None
        )
    assert all(
        len(cache) <= 3 for cache in (decoder._symbols, decoder._providers, decoder._volumes)
    )


def tick(symbol: str, ts: int, provider: str = "alpha", tick_id: str | None = None) -> SourcedTick:
    row = TickRow(symbol, Decimal(1), ts, provider, Decimal(1), "USD", tick_id)
    return SourcedTick(row, "market.ticks", 0, ts, b"{}")


def test_snapshots_are_independent_of_later_batches() -> None:
    dedup, cons, candles = (
        Deduplicator(60_000),
        Consolidator(("alpha",), 5_000),
        CandleBuilder(60_000, 5_000),
    )
    first = [tick("A", NOW), tick("B", NOW + 1, tick_id="b1")]
    dedup.filter(first)
    cons.accept(first)
    candles.add(first, 0)
    before = [pickle.dumps(s) for s in (dedup.snapshot(), cons.snapshot(), candles.snapshot())]
    snaps = (dedup.snapshot(), cons.snapshot(), candles.snapshot())
    later = [tick("A", NOW + 2), tick("C", NOW + 3, provider="beta"), tick("A", NOW + 90_000)]
    dedup.filter(later)
    cons.accept(later)
    candles.add(later, 0)
    assert [pickle.dumps(s) for s in snaps] == before


def test_dedup_reads_snapshots_with_one_expiry_entry_per_key() -> None:
    old = Deduplicator(1_000)
    old.seen = {("alpha", "A", 5), "t1"}
    old.expiry = deque([(5, ("alpha", "A", 5)), (5, "t1")])  # type: ignore[list-item]
    restored = pickle.loads(pickle.dumps(old))
    assert list(restored.expiry) == [KeyBatch(5, (("alpha", "A", 5),)), KeyBatch(5, ("t1",))]
    assert (restored.seen, restored.ids) == ({("alpha", "A", 5)}, {"t1": 5})
    fresh, repeats, stale = restored.filter([tick("A", 5), tick("A", 5_000)])
    assert (len(fresh), repeats, stale) == (1, 1, [])
    assert (restored.seen, restored.ids) == ({("alpha", "A", 5_000)}, {})


_decimals = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**20), max_value=10**20),
    st.sampled_from([Decimal("1E-7"), Decimal("1E+2"), Decimal("-0"), Decimal("0.000000")]),
)
_strings = st.one_of(st.sampled_from(["AAPL", "BRK.B", 'q"uote', "back\\slash", "é€"]), st.text())


@settings(max_examples=300, deadline=None)
@given(
    symbol=_strings,
    price=_decimals,
    ts_ms=st.integers(min_value=0, max_value=7_258_118_400_000),
    provider=_strings,
    currency=_strings,
    volume=st.one_of(st.none(), _decimals),
)
def test_price_json_is_the_reference_document(
    symbol: str,
    price: Decimal,
    ts_ms: int,
    provider: str,
    currency: str,
    volume: Decimal | None,
) -> None:
    row = PriceRow(symbol, price, ts_ms, provider, currency, volume)
    assert price_json(*row) == orjson.dumps(price_doc(row)).decode()
    item = SourcedTick(
        TickRow(symbol, price, ts_ms, provider, volume, currency, None), "t", 0, 0, b""
    )
    assert price_messages([item]) == [price_message(row)]
    assert dec_fast(price) == dec(price)
    assert iso_fast(ts_ms) == iso(ts_ms)


def test_price_messages_and_latest_prices_match_the_row_path() -> None:
    items = [
        tick("A", NOW + 5),
        tick("B", NOW + 1),
        tick("A", NOW + 3),
        tick("A", NOW + 5, provider="beta"),  # a tie: the first arrival stays
        tick("B", NOW + 2),
    ]
    rows = [price_row(item) for item in items]
    assert price_messages(items) == [price_message(row) for row in rows]
    assert latest_prices(items) == list(latest_per_symbol([rows]).values())
    assert [r.provider for r in latest_prices(items)] == ["alpha", "alpha"]


def test_dedup_snapshot_restores_the_same_state_and_pickles_each_batch_once() -> None:
    dedup = Deduplicator(60_000)
    dedup.filter([tick("A", NOW, tick_id="a1"), tick("B", NOW + 1)])
    first = pickle.dumps(dedup.snapshot())
    dedup.filter([tick("A", NOW + 2, tick_id="a2")])
    snap = dedup.snapshot()
    restored = pickle.loads(pickle.dumps(snap))
    assert isinstance(restored, Deduplicator)
    assert (restored.seen, list(restored.expiry)) == (dedup.seen, list(dedup.expiry))
    assert restored.ids == dedup.ids == {"a1": NOW, "a2": NOW + 2}
    assert resume(snap, 1) == resume(restored, 1) == snap.restore()
    assert isinstance(resume(None, 5), Deduplicator)
    # The first batch was pickled once; every later snapshot embeds those bytes.
    older = dedup.expiry[0]
    assert older._pickled is not None and older._pickled in first
    fresh, repeats, stale = restored.filter(
        [tick("A", NOW, tick_id="a9"), tick("C", NOW, tick_id="a2")]
    )
    assert (fresh, repeats, stale) == ([], 2, [])
    assert isinstance(snap, DedupSnapshot)
