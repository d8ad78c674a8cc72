"""Pure ingest steps: candles against an independent computation, dedup,
provider consolidation (failover, failback, no interleaving)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.ingest.candles import CandleBuilder
from flows.ingest.consolidate import Consolidator
from flows.ingest.dedup import Deduplicator
from flows.ingest.records import SourcedTick
from schemas.fast import TickRow

WINDOW = 60_000
LATENESS = 5_000
T0 = 1_767_225_600_000


def tick(
    symbol: str,
    price: str | int,
    ts: int,
    provider: str = "alpha",
    volume: int = 1,
    tick_id: str | None = None,
    offset: int = 0,
) -> SourcedTick:
    row = TickRow(symbol, Decimal(price), ts, provider, Decimal(volume), "USD", tick_id)
    return SourcedTick(row, "market.ticks", 0, offset, b"{}")


def reference_candles(ticks: list[SourcedTick]) -> tuple[dict, list[int]]:
    """Plain recomputation: a tick is late if its window ended before the
    watermark (max event time seen so far - lateness); the rest are grouped."""
    newest = None
    late: list[int] = []
    groups: dict[tuple[str, int], list[TickRow]] = {}
    for item in ticks:
        t = item.tick
        start = t.ts_ms - t.ts_ms % WINDOW
        if newest is not None and start + WINDOW <= newest - LATENESS:
            late.append(item.offset)
            continue
        newest = t.ts_ms if newest is None else max(newest, t.ts_ms)
        groups.setdefault((t.symbol, start), []).append(t)
    candles = {}
    for key, rows in groups.items():
        first = min(rows, key=lambda r: r.ts_ms)  # min() keeps the first arrival on ties
        last = max(reversed(rows), key=lambda r: r.ts_ms)  # ... and this the last
        candles[key] = (
            first.price,
            max(r.price for r in rows),
            min(r.price for r in rows),
            last.price,
            sum((r.volume or Decimal(0) for r in rows), Decimal(0)),
            len(rows),
        )
    return candles, late


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["A", "B", "C"]),
            st.integers(1, 500),
            st.integers(0, 400_000),
            st.integers(0, 50),
        ),
        min_size=1,
        max_size=120,
    )
)
def test_candles_match_independent_computation(rows):
    ticks = [tick(s, p, T0 + ts, volume=v, offset=i) for i, (s, p, ts, v) in enumerate(rows)]
    builder = CandleBuilder(WINDOW, LATENESS)
    emitted, late = [], []
    for item in ticks:  # one tick per batch, system time frozen
        closed, late_ticks = builder.add([item], now_sys_ms=0)
        emitted += closed
        late += [t.offset for t, _ in late_ticks]
    emitted += builder.close_all()
    expected, expected_late = reference_candles(ticks)
    got = {
        (c.symbol, c.window_start_ms): (c.open, c.high, c.low, c.close, c.volume, c.trades)
        for c in emitted
    }
    assert len(got) == len(emitted), "a window was emitted twice"
    assert got == expected
    assert late == expected_late


def test_quiet_symbols_close_on_system_time():
    builder = CandleBuilder(WINDOW, LATENESS)
    closed, _ = builder.add([tick("A", 10, T0 + 1_000)], now_sys_ms=1_000_000)
    assert closed == []
    # Nothing arrives; once system time covers window end + lateness, it closes.
    due = builder.next_close_sys_ms()
    assert due == 1_000_000 + (WINDOW - 1_000) + LATENESS
    assert builder.close_due(due - 1) == []
    [candle] = builder.close_due(due)
    assert (candle.symbol, candle.open, candle.trades) == ("A", Decimal(10), 1)


def test_late_tick_after_close_is_returned_not_dropped():
    builder = CandleBuilder(WINDOW, LATENESS)
    builder.add([tick("A", 1, T0)], 0)
    closed, _ = builder.add([tick("A", 2, T0 + WINDOW + LATENESS + 1)], 0)
    assert [c.window_start_ms for c in closed] == [T0]
    _, late = builder.add([tick("A", 3, T0 + 10)], 0)
    assert [(t.tick.price, until) for t, until in late] == [(Decimal(3), T0 + WINDOW + 1)]


def test_dedup_by_key_and_tick_id_within_horizon():
    dedup = Deduplicator(horizon_ms=10_000)
    batch = [
        tick("A", 1, T0),
        tick("A", 1, T0),
        tick("A", 2, T0, provider="beta"),
        tick("A", 3, T0 + 1, tick_id="x"),
        tick("A", 3, T0 + 2, tick_id="x"),
    ]
    fresh, repeats, stale = dedup.filter(batch)
    assert (repeats, stale) == (2, [])
    assert [(t.tick.provider, t.tick.ts_ms) for t in fresh] == [
        ("alpha", T0),
        ("beta", T0),
        ("alpha", T0 + 1),
    ]
    dedup.filter([tick("A", 1, T0 + 20_000)])  # moves the horizon past T0
    assert (("alpha", "A", T0)) not in dedup.seen
    assert len(dedup.seen) == len(dedup.expiry) == 1 and dedup.ids == {}
    # Behind the horizon: cannot be checked, so it is returned for the DLQ.
    fresh, repeats, stale = dedup.filter([tick("A", 1, T0 + 9_999), tick("A", 1, T0 + 10_000)])
    assert ([t.tick.ts_ms for t in fresh], repeats) == ([T0 + 10_000], 0)
    assert [t.tick.ts_ms for t in stale] == [T0 + 9_999]


def test_a_tick_id_counts_while_its_first_tick_is_within_the_horizon():
    dedup = Deduplicator(horizon_ms=10_000)
    first, later = tick("A", 1, T0 + 5_000, tick_id="x"), tick("A", 1, T0 + 15_500)
    again = tick("A", 2, T0 + 5_600, tick_id="x")  # the id's first tick is now behind
    one_batch = dedup.filter([first, later, again])
    assert ([t.tick.ts_ms for t in one_batch[0]], one_batch[1]) == (
        [T0 + 5_000, T0 + 15_500, T0 + 5_600],
        0,
    )
    repeat = tick("A", 3, T0 + 15_600, tick_id="x")  # same id, first tick within reach
    assert dedup.filter([repeat])[:2] == ([], 1)


def providers_of(chosen: list[SourcedTick]) -> list[str]:
    return [t.tick.provider for t in chosen]


def test_consolidation_failover_and_failback():
    c = Consolidator(("alpha", "beta"), stale_ms=5_000)
    seq = [
        tick("A", 1, T0, "alpha"),
        tick("A", 1, T0 + 100, "beta"),
        tick("A", 2, T0 + 1_000, "alpha"),
        tick("A", 2, T0 + 2_000, "beta"),
        # alpha goes silent; beta keeps ticking
        tick("A", 3, T0 + 5_000, "beta"),
        tick("A", 4, T0 + 7_000, "beta"),
        tick("A", 5, T0 + 9_000, "beta"),
        # alpha recovers
        tick("A", 6, T0 + 9_500, "alpha"),
        tick("A", 7, T0 + 9_600, "beta"),
        tick("A", 8, T0 + 10_000, "alpha"),
    ]
    chosen, switches, held = c.accept(seq)
    assert providers_of(chosen) == ["alpha", "alpha", "beta", "beta", "alpha", "alpha"]
    assert [(s.kind, s.to_provider) for s in switches] == [
        ("initial", "alpha"),
        ("failover", "beta"),
        ("failback", "alpha"),
    ]
    assert held == 4


def test_unknown_provider_ranks_last_and_series_never_interleaves():
    c = Consolidator(("alpha",), stale_ms=1_000)
    chosen, _, _ = c.accept(
        [
            tick("A", 1, T0, "zeta"),
            tick("A", 1, T0 + 10, "alpha"),
            tick("A", 1, T0 + 20, "zeta"),
            tick("A", 1, T0 + 30, "alpha"),
        ]
    )
    assert providers_of(chosen) == ["zeta", "alpha", "alpha"]
    # Within the series, once switched, the other provider's ticks never appear.
    assert providers_of(chosen)[1:] == ["alpha", "alpha"]
