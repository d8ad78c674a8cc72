"""History ranges and daily-bar backfill on a real embedded ClickHouse."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from sinks.clickhouse.client import ClickHouseClient
from sinks.clickhouse.history import (
    BackfillResult,
    BadRowsError,
    backfill_daily_bars,
    history,
    months_before,
)
from sinks.clickhouse.schema import apply_schema
from sinks.clickhouse.writer import CandleRow, insert_candles

END = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)  # a Saturday
MINUTE = 60_000


@pytest.fixture
def ch(engine: ClickHouseClient) -> Iterator[ClickHouseClient]:
    client = engine.for_database(f"t_{uuid.uuid4().hex[:12]}")
    apply_schema(client)
    yield client
    engine.command(f"DROP DATABASE IF EXISTS `{client.database}` SYNC")


Row = tuple[str, date, Decimal, Decimal, Decimal, Decimal, Decimal]


def daily_rows(symbol: str, first: date, last: date) -> list[Row]:
    """Weekday bars: (symbol, day, open, high, low, close, volume)."""
    rows: list[Row] = []
    day, price = first, Decimal("50")
    while day <= last:
        if day.weekday() < 5:
            step = Decimal(day.toordinal() % 7 - 3) / 4
            close = max(Decimal("1"), price + step)
            high, low = max(price, close) + 1, min(price, close) - Decimal("0.5")
            rows.append(
                (symbol, day, price, high, low, close, Decimal(1000 + day.toordinal() % 500))
            )
            price = close
        day += timedelta(days=1)
    return rows


def write_csv(path: Path, rows: list[Row]) -> Path:
    lines = ["symbol,date,open,high,low,close,volume"]
    lines += [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def as_bar(row: Row) -> tuple:
    return (row[2], row[3], row[4], row[5], row[6])


def values(bar) -> tuple:
    return (bar.open, bar.high, bar.low, bar.close, bar.volume)


def test_each_range_reads_its_granularity(ch: ClickHouseClient, tmp_path: Path):
    bars = daily_rows("AAA", date(2013, 1, 2), date(2024, 6, 12))
    assert backfill_daily_bars(ch, write_csv(tmp_path / "d.csv", bars)).inserted == len(bars)
    first_minute = int((END - timedelta(hours=26)).timestamp() * 1000)
    minutes = [
        CandleRow("AAA", ms, ms + MINUTE, Decimal(60), Decimal(61), Decimal(59), Decimal("60.5"),
                  Decimal(10), 3, "USD", 1)
        for ms in range(first_minute, int(END.timestamp() * 1000), MINUTE)
    ]  # fmt: skip
    insert_candles(ch, minutes)

    day = history(ch, "aaa", "1d", end=END)
    assert (day.symbol, day.granularity, len(day.bars)) == ("AAA", "1m", 1440)
    assert day.bars[0].start == END - timedelta(days=1) and day.bars[-1].start < END

    week = history(ch, "AAA", "7d", end=END)
    assert week.granularity == "1h" and len(week.bars) == 26  # minute candles only
    assert week.bars[0].volume == 600 and week.bars[0].trades == 180

    month = history(ch, "AAA", "1m", end=END)
    in_month = [b for b in bars if b[1] >= date(2024, 5, 15)]
    assert month.granularity == "1d" and len(month.bars) == len(in_month) + 2  # + June 14, 15
    assert [values(b) for b in month.bars[: len(in_month)]] == [as_bar(b) for b in in_month]
    assert month.bars[-1].start == datetime(2024, 6, 15, tzinfo=UTC)
    assert month.bars[-1].volume == 10 * 720  # 00:00..11:59 of June 15

    three_years = history(ch, "AAA", "3y", end=END)
    assert three_years.granularity == "1w"
    assert all(b.start.weekday() == 0 for b in three_years.bars)
    assert three_years.bars[0].start == datetime(2021, 6, 14, tzinfo=UTC)  # Monday of 2021-06-15

    ten_years = history(ch, "AAA", "10y", end=END)
    assert ten_years.granularity == "1mo" and len(ten_years.bars) == 121  # 2014-06 .. 2024-06
    june_2014 = [b for b in bars if (b[1].year, b[1].month) == (2014, 6)]
    first = ten_years.bars[0]
    assert first.start == datetime(2014, 6, 1, tzinfo=UTC)
    assert (first.open, first.close) == (june_2014[0][2], june_2014[-1][5])
    assert first.high == max(b[3] for b in june_2014) and first.low == min(b[4] for b in june_2014)
    assert first.volume == sum(b[6] for b in june_2014)
    assert len(history(ch, "AAA", "all", end=END).bars) == 138  # 2013-01 .. 2024-06
    assert history(ch, "ZZZ", "all", end=END).bars == []


def test_range_arguments_are_checked(ch: ClickHouseClient):
    with pytest.raises(ValueError, match="unknown range"):
        history(ch, "AAA", "2w")
    with pytest.raises(ValueError, match="timezone"):
        history(ch, "AAA", "1d", end=datetime(2024, 1, 1))  # noqa: DTZ001 - naive on purpose
    assert months_before(datetime(2024, 3, 31, tzinfo=UTC), 1) == datetime(2024, 2, 29, tzinfo=UTC)
    assert months_before(datetime(2024, 1, 15, tzinfo=UTC), 13) == datetime(
        2022, 12, 15, tzinfo=UTC
    )


def test_backfill_is_idempotent_and_corrections_replace(ch: ClickHouseClient, tmp_path: Path):
    rows = daily_rows("AAA", date(2024, 1, 1), date(2024, 2, 29))
    rows += daily_rows("BBB", date(2024, 1, 1), date(2024, 2, 29))
    csv = write_csv(tmp_path / "d.csv", rows)
    assert backfill_daily_bars(ch, csv) == BackfillResult(len(rows), len(rows), 0, 0, 0)
    march = datetime(2024, 3, 1, tzinfo=UTC)
    before = history(ch, "AAA", "3m", end=march).bars
    assert [values(b) for b in before] == [as_bar(r) for r in rows if r[0] == "AAA"]
    assert backfill_daily_bars(ch, csv, chunk_lines=7) == BackfillResult(
        len(rows), 0, len(rows), 0, 0
    )
    assert history(ch, "AAA", "3m", end=march).bars == before

    last = rows.index(next(r for r in rows if r[0] == "AAA" and r[1] == date(2024, 2, 29)))
    fixed = list(rows)
    symbol, day, open_, high, low, _close, _volume = rows[last]
    fixed[last] = (symbol, day, open_, high, low, low, Decimal(1))  # close at the low
    result = backfill_daily_bars(ch, write_csv(tmp_path / "fixed.csv", fixed))
    assert result == BackfillResult(len(rows), 0, len(rows) - 1, 1, 0)
    after = history(ch, "AAA", "3m", end=march).bars
    assert values(after[-1]) == as_bar(fixed[last])
    february = history(ch, "AAA", "10y", end=END).bars[-1]
    assert february.start == datetime(2024, 2, 1, tzinfo=UTC)
    assert february.close == rows[last][4]
    in_feb = [r for r in fixed if r[0] == "AAA" and r[1].month == 2]
    assert february.volume == sum(r[6] for r in in_feb)
    [(versions,)] = ch.query_rows(f"SELECT count() FROM {ch.table('daily_bars')} FINAL")
    assert versions == len(rows)


def test_bad_rows_are_reported_by_line_and_nothing_is_stored(ch: ClickHouseClient, tmp_path: Path):
    csv = tmp_path / "bad.csv"
    csv.write_text(
        "Symbol,Date,Open,High,Low,Close,Volume\n"
        "AAA,2024-01-02,10,11,9,10.5,100\n"
        "a$b,2024-01-02,10,11,9,10.5,100\n"
        "AAA,2024-13-01,10,11,9,10.5,100\n"
        "AAA,2024-01-03,10,,9,10.5,100\n"
        "AAA,2024-01-04,10,11,9,10.5,-5\n"
        "AAA,2024-01-05,10,9,11,10.5,100\n"
        "AAA,2024-01-08,10.0000000000001,11,9,10.5,100\n"
        "AAA,2024-01-09,10,11,9,10.5,100,extra\n"
        "AAA,2024-01-10,12,11,9,10.5,100\n"
        "AAA,2024-01-11,0,11,0,10.5,100\n"
        "AAA,2024-02-30,10,11,9,10.5,100\n"
    )
    with pytest.raises(BadRowsError) as caught:
        backfill_daily_bars(ch, csv)
    errors = {e.line: e.reason for e in caught.value.errors}
    assert caught.value.total == 10 and sorted(errors) == list(range(3, 13))
    assert "invalid symbol 'a$b'" in errors[3]
    assert "date is not a date" in errors[4]
    assert errors[5] == "high is missing"
    assert "volume must be >= 0" in errors[6]
    assert "low 11 is above high 9" in errors[7]
    assert "12 fractional digits" in errors[8]
    assert errors[9] == "too many columns"
    assert "open is outside low..high" in errors[10]
    assert errors[11] == "open must be > 0"
    assert "date is not a date" in errors[12]  # not silently March 1
    assert "line 3: invalid symbol" in str(caught.value)
    [(stored,)] = ch.query_rows(f"SELECT count() FROM {ch.table('daily_bars')}")
    assert stored == 0


def test_price_rows_with_timestamps(ch: ClickHouseClient, tmp_path: Path):
    csv = tmp_path / "prices.csv"
    csv.write_bytes(
        b"\xef\xbb\xbfticker,ts,price\r\n"  # a spreadsheet's byte-order mark, CRLF
        b"aaa,2024-03-01T23:30:00-05:00,10.5\r\n"  # 04:30 UTC on March 2
        b"\r\n"
        b"AAA,1709510400000,11\r\n"  # 2024-03-04T00:00:00Z
        b"AAA,2024-03-05,12.25\r\n"
    )
    assert backfill_daily_bars(ch, csv, currency="eur").inserted == 3
    rows = ch.query_rows(
        f"SELECT day, open, high, low, close, volume, currency FROM {ch.table('daily_bars')}"
        " FINAL ORDER BY day"
    )
    assert [(r[0], r[1], r[4], r[5], r[6]) for r in rows] == [
        (date(2024, 3, 2), Decimal("10.5"), Decimal("10.5"), 0, "EUR"),
        (date(2024, 3, 4), Decimal(11), Decimal(11), 0, "EUR"),
        (date(2024, 3, 5), Decimal("12.25"), Decimal("12.25"), 0, "EUR"),
    ]

    naive = tmp_path / "naive.csv"
    naive.write_text("symbol,ts,price,volume\nAAA,2024-03-06 10:00:00,1,2\nAAA,2024-03-07,1,2\n")
    with pytest.raises(BadRowsError, match="line 2: ts has no timezone offset"):
        backfill_daily_bars(ch, naive)


def test_duplicate_days_and_bad_headers_are_rejected(ch: ClickHouseClient, tmp_path: Path):
    duplicated = tmp_path / "dup.csv"
    duplicated.write_text(
        "symbol,date,price\nAAA,2024-01-02,1\nBBB,2024-01-02,1\naaa,2024-01-02,2\n"
    )
    with pytest.raises(BadRowsError) as caught:
        backfill_daily_bars(ch, duplicated)
    assert caught.value.errors[0].line == 4
    assert "duplicate bar for AAA on 2024-01-02 (first at line 2)" in caught.value.errors[0].reason

    header = tmp_path / "header.csv"
    header.write_text("name,when,value\nAAA,2024-01-02,1\n")
    with pytest.raises(BadRowsError, match="line 1: header needs symbol"):
        backfill_daily_bars(ch, header)
