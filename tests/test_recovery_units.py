"""The pieces that make a restarted or replayed run reach the same result as
an uninterrupted one: results independent of how input was split into
batches, no system-time watermark while a shard replays history or after a
restart, and steps that wait for the end markers of the inputs they must not
run ahead of."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from decimal import Decimal

from bytewax.testing import TestingSink, TestingSource, run_main
from hypothesis import example, given, settings
from hypothesis import strategies as st

from benchmarks.chaos_workload import Workload, tick_records
from connectors.kafka.source import KafkaBatchSource
from flows.alerts.stream import (
    PortfolioAlertLogic,
    PriceAlertLogic,
    PriceAlerts,
    decode_rules,
    route_rules,
)
from flows.ingest.candles import CandleBuilder
from flows.ingest.dedup import Deduplicator
from flows.ingest.flow import IngestSinks, build_ingest_flow
from flows.ingest.quiet import REPLAY_LAG_MS
from flows.ingest.records import SourcedTick
from flows.valuation.coalesce import PriceCoalescer
from flows.valuation.shard import PortfolioShard, ShardOutput
from flows.valuation.steps import CoalesceLogic, PortfolioShardLogic
from schemas.envelope import RawBatch, RawRecord
from tests.kafka_util import produce
from tests.test_alerts_support import mk
from tests.test_ingest_logic import LATENESS, T0, WINDOW, reference_candles, tick
from tests.test_valuation_shard import prices, txn

LIVE_NOW = T0 + 1_000  # system time close to the ticks' event time
# A replayed input: late ticks among 8,000 (as the scale-out test's), read long after.
W = Workload(ticks=8_000, txns=0, symbols=12, portfolios=0, ticks_per_s=40)
NOW_MS = 1_795_000_000_000


def split(items: list[SourcedTick], seed: int) -> list[list[SourcedTick]]:
    rng, out, i = random.Random(seed), [], 0
    while i < len(items):
        size = rng.randint(1, 40)
        out.append(items[i : i + size])
        i += size
    return out


ROWS = st.lists(
    st.tuples(st.sampled_from("ABC"), st.integers(1, 500), st.integers(0, 400_000)),
    min_size=1,
    max_size=150,
)


@settings(max_examples=150, deadline=None)
@example([("A", 5_000, "x"), ("A", 15_500, None), ("A", 5_600, "x")], 0)  # an id behind
@given(
    st.lists(
        st.tuples(st.sampled_from("AB"), st.integers(0, 60_000), st.sampled_from([None, "x", "y"])),
        min_size=1,
        max_size=120,
    ),
    st.integers(0, 10**6),
)
def test_dedup_does_not_depend_on_batch_boundaries(rows, seed):
    """Repeats within and beyond the horizon (10 s here), by key and by
    tick_id: the ticks let through are the same however the partition was
    batched (a replay after a crash batches it differently)."""
    ticks = [
        tick(s, 1, T0 + ts, tick_id=tid and f"{tid}{ts // 1000}", offset=i)
        for i, (s, ts, tid) in enumerate(rows)
    ]

    def passed(batches: list[list[SourcedTick]]) -> list[int]:
        dedup = Deduplicator(horizon_ms=10_000)
        return [t.offset for batch in batches for t in dedup.filter(batch)[0]]

    assert passed(split(ticks, seed)) == passed([[t] for t in ticks]) == passed([ticks])


@settings(max_examples=150, deadline=None)
@given(ROWS, st.integers(0, 10**6))
def test_candles_do_not_depend_on_batch_boundaries(rows, seed):
    ticks = [tick(s, p, T0 + ts, offset=i) for i, (s, p, ts) in enumerate(rows)]
    builder = CandleBuilder(WINDOW, LATENESS)
    emitted, late, marks = [], [], []
    for batch in split(ticks, seed):  # system time frozen far ahead: a replay
        closed, late_ticks = builder.add(batch, now_sys_ms=T0 + 10 * REPLAY_LAG_MS)
        emitted += closed
        late += [t.offset for t, _ in late_ticks]
        marks += [until for _, until in late_ticks]  # in the dead letter's detail
    emitted += builder.close_all()
    expected, expected_late = reference_candles(ticks)
    got = {
        (c.symbol, c.window_start_ms): (c.open, c.high, c.low, c.close, c.volume, c.trades)
        for c in emitted
    }
    assert got == expected and len(got) == len(emitted)
    assert late == expected_late
    one_by_one = CandleBuilder(WINDOW, LATENESS)
    per_tick = [m for t in ticks for _, m in one_by_one.add([t], T0 + 10 * REPLAY_LAG_MS)[1]]
    assert marks == per_tick


@settings(max_examples=150, deadline=None)
@given(ROWS, st.integers(0, 10**6), st.integers(0, 10**6))
def test_price_windows_do_not_depend_on_batch_boundaries(rows, seed_a, seed_b):
    ticks = [tick(s, p, T0 + ts, offset=i) for i, (s, p, ts) in enumerate(rows)]

    def windows(seed: int) -> tuple[list[tuple[int, dict]], int]:
        coalescer = PriceCoalescer("s", 1_000, 500)
        out = []
        for batch in split(ticks, seed):
            closed = coalescer.add(batch, now_sys_ms=T0 + 10 * REPLAY_LAG_MS)
            out += closed.windows if closed else []
        final = coalescer.release_all()
        return out + (final.windows if final else []), coalescer.late

    assert windows(seed_a) == windows(seed_b)


def test_a_replaying_shard_ignores_system_time_a_live_one_does_not():
    replay = CandleBuilder(WINDOW, LATENESS)
    replay.add([tick("A", 1, T0)], now_sys_ms=T0 + 2 * REPLAY_LAG_MS)
    assert replay.next_close_sys_ms() is None
    assert replay.close_due(T0 + 100 * REPLAY_LAG_MS) == []

    live = CandleBuilder(WINDOW, LATENESS)
    live.add([tick("A", 1, T0)], now_sys_ms=LIVE_NOW)
    [candle] = live.close_due(LIVE_NOW + WINDOW + LATENESS)
    assert candle.window_start_ms == T0


def test_a_restored_shard_does_not_count_its_downtime_as_silence():
    coalescer = PriceCoalescer("s", 1_000, 500)
    coalescer.add([tick("A", 1, T0 + 100)], now_sys_ms=LIVE_NOW)
    restored = CoalesceLogic(coalescer, lambda: LIVE_NOW + 60_000, release_at_eof=False)
    # Without the reset a minute of downtime would release every pending window.
    assert restored.on_notify() == ([], False)
    assert restored.state.newest_at_sys_ms == LIVE_NOW + 60_000


def test_portfolio_shard_waits_for_its_transactions_and_every_price_shard():
    logic = PortfolioShardLogic.resume(
        None, 1_000, 60_000, lambda: 0, False, wait_for_input=True,
        price_shards=("market.ticks#0", "market.ticks#1"),
    )  # fmt: skip
    deposit = txn("p1", T0 + 10, type="DEPOSIT", amount="100")
    assert logic.on_batch([("txns", [deposit]), ("prices", prices(T0 + 2_000, A="1"))]) == (
        [],
        False,
    )
    assert logic.on_batch([("caught_up", None)]) == ([], False)  # ticks#1 not heard from
    empty = prices(T0, A="1")._replace(shard="market.ticks#1", watermark_ms=None, windows=[])
    [out], _ = logic.on_batch([("prices", empty)])
    assert isinstance(out, ShardOutput)
    assert [a.txn.txn_id for a in out.applied] == [deposit.txn.txn_id]
    assert [v.window_end_ms for v in out.live] == [T0 + 1_000]
    assert isinstance(logic.state, PortfolioShard) and logic.state.empty_price_shards


def test_alerts_wait_for_every_rules_partition():
    rule = mk("r1", "price_above", "10", symbol="A")
    shards = ("market.ticks#0",)

    def routed(batch: RawBatch) -> list:
        return [item for _, item in route_rules(decode_rules(batch)[0], shards, ())]

    rules_0 = RawBatch("alerts.rules", 0, [])
    rules_1 = RawBatch("alerts.rules", 1, [RawRecord(0, b"r1", rule.model_dump_json().encode())])
    logic = PriceAlertLogic(PriceAlerts(), lambda: LIVE_NOW, rule_partitions=2)
    early = [tick("A", 20, T0)]
    assert logic.on_batch([*routed(rules_0), ("prices", early)]) == ([], False)
    [fired], _ = logic.on_batch([*routed(rules_1), *routed(RawBatch("alerts.rules", 1, []))])
    assert [(a.rule_id, a.observed) for a in fired] == [("r1", Decimal(20))]

    portfolio = PortfolioAlertLogic(PriceAlerts().book, rule_partitions=1)
    assert portfolio.on_batch([("outputs", ShardOutput())]) == ([], False)
    assert portfolio.state.waiting == [ShardOutput()]


def test_kafka_source_ends_each_partition_with_an_empty_batch(settings):
    topic = settings.topics.rules
    produce(settings.kafka_bootstrap, topic, [("k", b"v1"), ("k", b"v2")])
    source = KafkaBatchSource(settings.kafka_client_config(), (topic,), tail=False)
    batches = []
    for part in source.list_parts():
        partition = source.build_part("in", part, None)
        try:
            while True:
                batches += partition.next_batch()
        except StopIteration:
            partition.close()
    assert sum(len(b.records) for b in batches) == 2
    markers = [i for i, b in enumerate(batches) if not b.records]
    assert sorted(batches[i].partition for i in markers) == [0, 1]  # both partitions
    for i in markers:  # a marker comes after everything read from its partition
        assert all(not b.records for b in batches[i:] if b.partition == batches[i].partition)


def test_a_tailing_source_marks_each_partition_end_once(settings):
    """Live, the end is reached again each time the consumer catches up with
    new records; the marker still comes once per partition and run."""
    topic = settings.topics.rules
    produce(settings.kafka_bootstrap, topic, [("k", b"v1")])
    source = KafkaBatchSource(settings.kafka_client_config(), (topic,), tail=True)
    parts = [source.build_part("in", part, None) for part in source.list_parts()]
    batches: list[RawBatch] = []

    def poll_for(seconds: float, done: Callable[[], bool] = lambda: False) -> None:
        deadline = time.monotonic() + seconds  # bounds the polling, asserts nothing
        while not done() and time.monotonic() < deadline:
            batches.extend(b for p in parts for b in p.next_batch())

    poll_for(30, lambda: len([b for b in batches if not b.records]) >= 2)
    produce(settings.kafka_bootstrap, topic, [("k", b"v2")])
    poll_for(30, lambda: sum(len(b.records) for b in batches) == 2)
    poll_for(3)  # long enough for the broker to report the end again
    for p in parts:
        p.close()
    assert sum(len(b.records) for b in batches) == 2
    assert sorted(b.partition for b in batches if not b.records) == [0, 1]


def test_dead_letters_do_not_depend_on_batch_boundaries():
    """A replay after a crash, or a consumer that fetched at another pace,
    splits a partition differently: every dead letter (late ticks included)
    must come out the same, or a comparison with a crash-free run differs."""
    records = [RawRecord(i, key.encode(), value) for i, (key, value) in enumerate(tick_records(W))]

    def dead_letters(size: int) -> dict[str, bytes]:
        batches = [
            RawBatch("market.ticks", 0, records[i : i + size]) for i in range(0, 8_000, size)
        ]
        out: list[list[tuple[str, bytes]]] = []
        sinks = IngestSinks(dead_letters=TestingSink(out))
        run_main(build_ingest_flow(TestingSource(batches), sinks, clock=lambda: NOW_MS))
        return {key: value for rows in out for key, value in rows}

    reference = dead_letters(2_000)
    assert any(b'"reason":"late"' in v for v in reference.values())
    for size in (1_500, 333):
        assert dead_letters(size) == reference, size
