"""Backfill and history latency on embedded ClickHouse (chDB).

    python -m benchmarks.history_bench --symbols 1000 --years 10 --dir /tmp/x

Generates ``symbols x years`` of weekday daily bars as CSV (not timed), loads
them with ``backfill_daily_bars`` into a fresh database (target < 30 s),
loads them again (the idempotent re-run), then times ``history(symbol,
'10y')`` on random symbols (target p50 < 50 ms) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from benchmarks.stats import percentile
from sinks.clickhouse.client import open_clickhouse
from sinks.clickhouse.history import backfill_daily_bars, history
from sinks.clickhouse.schema import apply_schema

BACKFILL_TARGET_S = 30.0
HISTORY_TARGET_MS = 50.0
SCALE = 10_000  # prices in 1/10,000 so generation formats integers, not floats


def weekdays(years: int, last: date) -> list[str]:
    first = last - timedelta(days=365 * years + years // 4)
    days = (first + timedelta(days=i) for i in range((last - first).days + 1))
    return [d.isoformat() for d in days if d.weekday() < 5]


def _money(units: int) -> str:
    return f"{units // SCALE}.{units % SCALE:04d}"


def generate_csv(path: Path, symbols: int, days: list[str], seed: int) -> int:
    """A random walk per symbol; returns the number of bars written."""
    rnd = random.Random(seed)
    rows = 0
    with path.open("w") as out:
        out.write("symbol,date,open,high,low,close,volume\n")
        for index in range(symbols):
            symbol, price = f"S{index:05d}", rnd.randint(10, 500) * SCALE
            lines = []
            for day in days:
                close = max(SCALE, price + rnd.randint(-price // 50, price // 50))
                high = max(price, close) + rnd.randint(0, price // 100)
                low = max(1, min(price, close) - rnd.randint(0, price // 100))
                lines.append(
                    f"{symbol},{day},{_money(price)},{_money(high)},{_money(low)},"
                    f"{_money(close)},{rnd.randint(1_000, 5_000_000)}\n"
                )
                price = close
            out.write("".join(lines))
            rows += len(lines)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/folio-history-bench"))
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--repeat", type=int, default=3, help="fresh loads to time (shared machines are noisy)"
    )
    args = parser.parse_args()

    args.dir.mkdir(parents=True, exist_ok=True)
    last = date(2024, 12, 31)
    days = weekdays(args.years, last)
    csv_path = args.dir / "daily_bars.csv"
    started = time.perf_counter()
    rows = generate_csv(csv_path, args.symbols, days, args.seed)
    generated_s = time.perf_counter() - started
    size_mb = csv_path.stat().st_size / 1e6

    client = open_clickhouse(f"chdb://{args.dir.resolve() / 'clickhouse'}", "bench")
    try:
        loads: list[float] = []
        load_cpus: list[float] = []  # this process, engine threads included
        for _ in range(args.repeat):
            client.command("DROP DATABASE IF EXISTS `bench` SYNC")
            apply_schema(client)
            started, cpu = time.perf_counter(), time.process_time()
            first = backfill_daily_bars(client, csv_path)
            loads.append(time.perf_counter() - started)
            load_cpus.append(time.process_time() - cpu)
        started, cpu = time.perf_counter(), time.process_time()
        again = backfill_daily_bars(client, csv_path)
        reload_s, reload_cpu = time.perf_counter() - started, time.process_time() - cpu

        end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        rnd = random.Random(args.seed)
        timings: dict[str, list[float]] = {}
        bars: dict[str, int] = {}
        for range_name in ("10y", "1y", "3y"):
            history(client, "S00000", range_name, end=end)  # warm-up
            samples = []
            for _ in range(args.queries):
                symbol = f"S{rnd.randrange(args.symbols):05d}"
                started = time.perf_counter()
                result = history(client, symbol, range_name, end=end)
                samples.append((time.perf_counter() - started) * 1000)
                bars[range_name] = len(result.bars)
            timings[range_name] = samples
    finally:
        client.close()

    assert first.inserted == rows and again.unchanged == rows, (first, again)
    load_s = statistics.median(loads)
    print(f"\n{args.symbols} symbols x {args.years} years = {rows:,} daily bars "
          f"({size_mb:.0f} MB CSV, generated in {generated_s:.1f} s); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")  # fmt: skip
    print("| measurement | result | target |")
    print("|---|---|---|")
    verdict = "ok" if load_s < BACKFILL_TARGET_S else "MISSED"
    runs = ", ".join(f"{s:.1f}" for s in loads)
    print(f"| backfill_daily_bars, empty database, median of {len(loads)} ({runs} s) "
          f"| {load_s:.1f} s ({rows / load_s:,.0f} rows/s; "
          f"{statistics.median(load_cpus):.1f} CPU-s) "
          f"| < {BACKFILL_TARGET_S:.0f} s {verdict} |")  # fmt: skip
    print(f"| backfill_daily_bars, same file again (all unchanged) "
          f"| {reload_s:.1f} s ({reload_cpu:.1f} CPU-s) | - |")  # fmt: skip
    for range_name, samples in timings.items():
        median, p99 = statistics.median(samples), percentile(samples, 0.99)
        target = "-"
        if range_name == "10y":
            marks = [f"{name} {'ok' if v < HISTORY_TARGET_MS else 'MISSED'}"
                     for name, v in (("p50", median), ("p99", p99))]  # fmt: skip
            target = f"< {HISTORY_TARGET_MS:.0f} ms: {', '.join(marks)}"
        print(f"| history('{range_name}'), {bars[range_name]} bars, {len(samples)} queries "
              f"| p50 {median:.1f} ms, p99 {p99:.1f} ms | {target} |")  # fmt: skip


if __name__ == "__main__":
    main()
