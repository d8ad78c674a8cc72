"""Hour/day/week/month rollups equal an independent recomputation from the
1-minute candles, through replays in other batch splits, corrections,
interrupted corrections and daily bars (real embedded ClickHouse)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from sinks.clickhouse.batching import NO_RETRY, insert_batch
from sinks.clickhouse.candles import COLUMNS
from sinks.clickhouse.client import ClickHouseClient
from sinks.clickhouse.history import backfill_daily_bars
from sinks.clickhouse.rollups import queue_rebuild
from sinks.clickhouse.schema import apply_schema
from sinks.clickhouse.writer import CandleRow, CandleWriteResult, insert_candles

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
START = 1_706_659_200_000  # 2024-01-31T00:00:00Z: a month and a week boundary follow
ROLLUPS = ("candles_1h", "candles_1d", "candles_1w", "candles_1mo")


@pytest.fixture
def ch(engine: ClickHouseClient) -> Iterator[ClickHouseClient]:
    client = engine.for_database(f"t_{uuid.uuid4().hex[:12]}")
    apply_schema(client)
    yield client
    engine.command(f"DROP DATABASE IF EXISTS `{client.database}` SYNC")


def make_candles(seed: int, symbols: tuple[str, ...] = ("AAA", "BBB"), n: int = 700) -> list:
    """Candles every 7-97 minutes over ~3 weeks, crossing a month boundary."""
    rnd = random.Random(seed)
    rows = []
    for symbol in symbols:
        ts, price = START, Decimal("100")
        for _ in range(n):
            ts += rnd.randint(7, 97) * MINUTE
            close = max(Decimal("1"), price + Decimal(rnd.randint(-150, 150)) / 100)
            high = max(price, close) + Decimal(rnd.randint(0, 80)) / 100
            low = min(price, close) - Decimal(rnd.randint(0, 80)) / 100
            volume = Decimal(rnd.randint(0, 10**6)) / 1000
            rows.append(
                CandleRow(symbol, ts, ts + MINUTE, price, high, low, close, volume,
                          rnd.randint(1, 40), "USD", 1)
            )  # fmt: skip
            price = close
    return rows


def bucket(name: str, ms: int) -> int:
    if name == "candles_1h":
        return ms - ms % HOUR
    day = ms - ms % DAY
    if name == "candles_1d":
        return day
    moment = datetime.fromtimestamp(day / 1000, tz=UTC)
    if name == "candles_1w":
        return day - moment.weekday() * DAY
    return int(moment.replace(day=1).timestamp() * 1000)


def recompute(name: str, candles: list[CandleRow]) -> dict[tuple[str, int], tuple]:
    """Independent rollup: open of the first minute, close of the last, extremes, sums."""
    groups: dict[tuple[str, int], list[CandleRow]] = {}
    for c in candles:
        groups.setdefault((c.symbol, bucket(name, c.window_start_ms)), []).append(c)
    result = {}
    for key, members in groups.items():
        members.sort(key=lambda c: c.window_start_ms)
        result[key] = (
            members[0].open,
            max(c.high for c in members),
            min(c.low for c in members),
            members[-1].close,
            sum((c.volume for c in members), Decimal(0)),
            sum(c.trades for c in members),
        )
    return result


def stored(ch: ClickHouseClient, name: str) -> dict[tuple[str, int], tuple]:
    rows = ch.query_rows(
        "SELECT symbol, toUnixTimestamp64Milli(bucket_start), argMinMerge(open), max(high),"
        f" min(low), argMaxMerge(close), sum(volume), sum(trades) FROM {ch.table(name)}"
        " GROUP BY symbol, bucket_start"
    )
    return {(r[0], int(r[1])): (r[2], r[3], r[4], r[5], r[6], int(r[7])) for r in rows}


def assert_rollups_match(ch: ClickHouseClient, candles: list[CandleRow]) -> None:
    latest: dict[tuple[str, int], CandleRow] = {}
    for c in candles:
        latest[(c.symbol, c.window_start_ms)] = c
    for name in ROLLUPS:
        assert stored(ch, name) == recompute(name, list(latest.values())), name


def test_rollups_match_recomputation_through_replays_in_other_splits(ch: ClickHouseClient):
    candles = make_candles(seed=1)
    assert insert_candles(ch, candles, batch_size=500) == CandleWriteResult(inserted=1400)
    assert_rollups_match(ch, candles)
    assert len(stored(ch, "candles_1mo")) == 4  # two symbols x (January, February)

    # The same candles again, reversed and in other batch sizes: nothing changes.
    again = insert_candles(ch, list(reversed(candles)), batch_size=333)
    assert again == CandleWriteResult(unchanged=1400)
    shuffled = candles[:]
    random.Random(2).shuffle(shuffled)
    insert_candles(ch, shuffled, batch_size=101)
    assert_rollups_match(ch, candles)

    # A replay overlapping new candles stores only the new ones.
    newer = make_candles(seed=3, symbols=("CCC",), n=50)
    mixed = candles[600:900] + newer
    assert insert_candles(ch, mixed, batch_size=64) == CandleWriteResult(inserted=50, unchanged=300)
    assert_rollups_match(ch, candles + newer)


def test_corrections_recompute_buckets_and_stale_versions_are_ignored(ch: ClickHouseClient):
    candles = make_candles(seed=4, symbols=("AAA",), n=300)
    insert_candles(ch, candles)
    # Lower the hour's highest high: a max() state alone could never forget it.
    top = max(candles[:40], key=lambda c: c.high)
    fixes = [
        top._replace(high=max(top.open, top.close), volume=top.volume + 5, version=2),
        candles[100]._replace(close=candles[100].low, trades=99, version=7),
        candles[200]._replace(open=candles[200].high, version=3),
    ]
    assert insert_candles(ch, fixes) == CandleWriteResult(corrected=3)
    corrected = candles + fixes
    assert_rollups_match(ch, corrected)

    stale = candles[100]._replace(volume=Decimal("1"), version=6)  # older than version 7
    assert insert_candles(ch, [stale]) == CandleWriteResult(stale=1)
    assert insert_candles(ch, fixes) == CandleWriteResult(unchanged=3)
    # Within one batch the highest version of a key wins.
    twice = [candles[5]._replace(volume=Decimal("2"), version=9), candles[5]._replace(version=8)]
    assert insert_candles(ch, twice) == CandleWriteResult(corrected=1)
    assert_rollups_match(ch, [*corrected, twice[0]])
    [(pending,)] = ch.query_rows(f"SELECT count() FROM {ch.table('rollup_rebuilds')}")
    assert pending == 0


def test_an_interrupted_correction_is_repaired_at_start_up(ch: ClickHouseClient):
    candles = make_candles(seed=5, symbols=("AAA",), n=120)
    insert_candles(ch, candles)
    fix = candles[10]._replace(volume=candles[10].volume + 1000, version=2)
    # What a crash after storing the correction, before recomputing, leaves behind.
    queue_rebuild(ch, [(fix.symbol, fix.window_start_ms)])
    insert_batch(ch, "candles_1m", [(*fix, 1)], COLUMNS, NO_RETRY)
    with pytest.raises(AssertionError):
        assert_rollups_match(ch, [*candles, fix])  # the view added the volume twice
    apply_schema(ch)
    assert_rollups_match(ch, [*candles, fix])


def test_a_day_has_one_source_minute_candles_or_a_daily_bar(ch: ClickHouseClient, tmp_path: Path):
    csv = tmp_path / "bars.csv"
    csv.write_text(
        "symbol,date,open,high,low,close,volume\n"
        "AAA,2024-01-31,10,12,9,11,1000\n"
        "AAA,2024-02-01,11,13,10,12,2000\n"
    )
    minutes = [
        c
        for c in make_candles(seed=6, symbols=("AAA",), n=60)
        if c.window_start_ms < START + 2 * DAY
    ]
    first_day = [c for c in minutes if c.window_start_ms < START + DAY]
    insert_candles(ch, first_day)  # 2024-01-31 now has minute candles
    result = backfill_daily_bars(ch, csv)
    assert (result.inserted, result.skipped_overlap) == (1, 1)
    second_day = [c for c in minutes if c.window_start_ms >= START + DAY]
    insert_candles(ch, second_day)  # 2024-02-01 already has a daily bar

    days = stored(ch, "candles_1d")
    assert days[("AAA", START)] == recompute("candles_1d", first_day)[("AAA", START)]
    bar = (Decimal(11), Decimal(13), Decimal(10), Decimal(12), Decimal(2000), 0)
    assert days[("AAA", START + DAY)] == bar
    assert stored(ch, "candles_1h") == recompute("candles_1h", minutes)  # hours: all minutes
    [(flags,)] = ch.query_rows(
        f"SELECT groupUniqArray(feeds_daily) FROM {ch.table('candles_1m')}"
        f" WHERE window_start >= fromUnixTimestamp64Milli({START + DAY}, 'UTC')"
    )
    assert flags == [0]
