"""Alert engine: throughput in process, and tick-to-alert latency under Bytewax.

    python -m benchmarks.alerts_bench [--rules 100000] [--symbols 1000]
        [--rate 50000] [--seconds 10] [--observations 200000] [--step 0.0005]
        [--spread 0.02] [--pg-dsn DSN] [--seed 1] [--quick]

Target (issue): 100,000 active rules across 1,000 symbols at 50,000
ticks/s; the cost per tick grows with the rules on that symbol, not with
all rules; report throughput and tick-to-alert latency.

Rule mix per symbol: 40 % price_above, 40 % price_below (thresholds within
+/- ``--spread`` of the start price 100, hysteresis 0.5), 15 % pct_move
(1-5 % over 60 s or 5 min), 5 % feed_stale (30-120 s). A third of the
rules have a 60 s cooldown. Prices: a random walk per symbol, each tick
moving by up to ``--step`` (0.05 % by default, a busy tick feed; ``--step
0.005 --spread 0.1`` is a stress mix where most ticks fire an alert), on a
random symbol, event time advancing at ``--rate``.

Two tables:

Every symbol is first priced once at 100, untimed: new rules start armed,
so that price fires every rule already past its threshold (a burst that a
running system has behind it).

1. *Engine*: ``--observations`` prices through ``RuleBook.on_price`` in a
   loop (a watermark every 1,000), inputs built before the clock starts:
   what one core does at most, per-observation cost, rules examined per
   observation. Run twice: all rules, and a tenth of the rules on a tenth
   of the symbols (the same rules per symbol): if the cost follows the
   rules on the ticked symbol, the two columns match.
2. *Paced* (``benchmarks.alerts_latency``): ``--rate`` x ``--seconds``
   ticks through the pipeline's alert step under Bytewax; latency from a
   tick's publish time to its alert leaving the sink (Postgres with
   ``--pg-dsn``).

Timings on a shared machine are noisy: the CPU rows say how busy it was.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import statistics
import time
from decimal import Decimal

from benchmarks.alerts_latency import run_paced
from benchmarks.stats import percentile
from flows.alerts import RuleBook
from folio.runtime import tune_gc
from schemas.alerts import AlertRule

T0 = 1_767_225_600_000
START = Decimal(100)
Price = tuple[str, Decimal, int]  # (symbol, price, event time ms)


def make_rules(
    count: int, symbols: list[str], rng: random.Random, spread: float = 0.02
) -> list[AlertRule]:
    low, high = round(10_000 * (1 - spread)), round(10_000 * (1 + spread))
    rules = []
    for n in range(count):
        symbol = symbols[n % len(symbols)]
        roll = rng.random()
        base: dict[str, object] = {"rule_id": f"r{n}", "user_id": f"u{n % 5_000}"}
        base["symbol"] = symbol
        base["cooldown_ms"] = 60_000 if n % 3 == 0 else 0
        if roll < 0.8:
            kind = "price_above" if roll < 0.4 else "price_below"
            threshold = Decimal(rng.randint(low, high)) / 100
            rule = {**base, "kind": kind, "threshold": threshold, "hysteresis": "0.5"}
        elif roll < 0.95:
            window = rng.choice([60_000, 300_000])
            threshold = Decimal(rng.randint(10, 50)) / 10
            rule = {**base, "kind": "pct_move", "threshold": threshold, "window_ms": window}
        else:
            rule = {**base, "kind": "feed_stale", "threshold": rng.randint(30, 120)}
            rule.pop("cooldown_ms")
        rules.append(AlertRule.model_validate(rule))
    return rules


def make_prices(
    count: int, symbols: list[str], rng: random.Random, step: float = 0.0005, rate: int = 50_000
) -> list[Price]:
    """A random walk per symbol; tick i at T0 + i / rate (ms), bumped by a
    millisecond where needed so each symbol's event times strictly rise."""
    prices = dict.fromkeys(symbols, START)
    last = dict.fromkeys(symbols, 0)
    out = []
    scale = Decimal(str(step)) / 1_000
    cent = Decimal("0.01")
    for i in range(count):
        symbol = symbols[rng.randrange(len(symbols))]
        move = Decimal(rng.randint(-1_000, 1_000)) * scale
        price = max(cent, (prices[symbol] * (1 + move)).quantize(cent))
        prices[symbol] = price
        ts = last[symbol] = max(T0 + i * 1_000 // rate, last[symbol] + 1)
        out.append((symbol, price, ts))
    return out


def run_engine(rules: list[AlertRule], prices: list[Price]) -> dict[str, str]:
    book = RuleBook()
    started = time.perf_counter()
    for rule in rules:
        book.upsert(rule)
    upsert_s = time.perf_counter() - started

    primed = sum(
        len(book.on_price(s, START, T0 - 1)) for s in {r.symbol for r in rules if r.symbol}
    )
    latencies: list[int] = []
    alerts = 0
    clock = time.perf_counter_ns
    cpu, started = time.process_time(), time.perf_counter()
    for i, (symbol, price, ts) in enumerate(prices):
        begin = clock()
        alerts += len(book.on_price(symbol, price, ts))
        if i % 1_000 == 999:
            alerts += len(book.on_watermark(ts))
        latencies.append(clock() - begin)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu

    # The first snapshot pickles the rule segments not pickled yet (the last,
    # partial one); later ones (same rules) reuse them all.
    pickle_s = []
    for _ in range(2):
        started = time.process_time()
        snapshot = pickle.dumps(book, protocol=pickle.HIGHEST_PROTOCOL)
        pickle_s.append(time.process_time() - started)
    latencies.sort()
    stats = book.stats()
    n = len(prices)
    return {
        "rules (active) / symbols": f"{len(rules):,} / {len({r.symbol for r in rules}):,}",
        "price observations": f"{n:,}",
        "upsert all rules": f"{upsert_s:.2f} s ({upsert_s / len(rules) * 1e6:.1f} µs/rule)",
        "**observations/s (wall)**": f"**{n / elapsed:,.0f}**",
        "CPU per observation (mean)": f"{cpu / n * 1e6:.1f} µs ({cpu / elapsed:.0%} of wall)",
        "p50 / p99 / max per observation": _percentiles(latencies),
        "alerts at the priming price (not timed)": f"{primed:,}",
        "alerts fired (per 1,000 observations)": f"{alerts:,} ({alerts / n * 1_000:.1f})",
        "crossings swallowed by cooldown": f"{stats['suppressed']:,}",
        "rules examined per observation": f"{stats['evaluations'] / n:.2f}",
        "snapshot: size, CPU first / next": (
            f"{len(snapshot) / 1e6:.1f} MB, {pickle_s[0]:.2f} / {pickle_s[1]:.2f} s"
        ),
    }


def _percentiles(latencies: list[int]) -> str:
    p50 = statistics.median_low(latencies) / 1_000
    p99 = percentile(latencies, 0.99) / 1_000
    return f"{p50:.1f} / {p99:.1f} / {latencies[-1] / 1_000:.0f} µs"


def _table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rules", type=int, default=100_000)
    parser.add_argument("--symbols", type=int, default=1_000)
    parser.add_argument("--rate", type=int, default=50_000, help="ticks/s (paced run)")
    parser.add_argument("--seconds", type=float, default=10.0, help="paced run length")
    parser.add_argument("--observations", type=int, default=200_000, help="engine run")
    parser.add_argument("--step", type=float, default=0.0005, help="largest move per tick")
    parser.add_argument("--spread", type=float, default=0.02, help="thresholds: start +/-")
    parser.add_argument("--pg-dsn", default=os.environ.get("FOLIO_BENCH_PG_DSN"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="20,000 rules, 50,000 prices, 3 s")
    args = parser.parse_args()
    tune_gc()  # as ``folio run`` does
    if args.quick:
        args.rules, args.observations, args.seconds = 20_000, 50_000, 3.0

    columns = []
    for rules_n, symbols_n in ((args.rules, args.symbols), (args.rules // 10, args.symbols // 10)):
        rng = random.Random(args.seed)
        symbols = [f"S{n:04d}" for n in range(symbols_n)]
        rules = make_rules(rules_n, symbols, rng, args.spread)
        prices = make_prices(args.observations, symbols, rng, args.step, args.rate)
        columns.append(run_engine(rules, prices))
    print(f"Engine (step {args.step}, spread {args.spread}):\n")
    names = list(columns[0])
    _table(
        ["metric", "all rules", "a tenth (same per symbol)"],
        [[n, *(c[n] for c in columns)] for n in names],
    )

    rng = random.Random(args.seed)
    symbols = [f"S{n:04d}" for n in range(args.symbols)]
    rules = make_rules(args.rules, symbols, rng, args.spread)
    prices = make_prices(int(args.rate * args.seconds), symbols, rng, args.step, args.rate)
    print(f"Paced through Bytewax ({args.rules:,} rules, {args.symbols:,} symbols):\n")
    priming = [(symbol, START, T0 - 1) for symbol in symbols]
    rows = run_paced(rules, priming, prices, args.rate, args.pg_dsn)
    _table(["metric", "value"], [list(row) for row in rows])


if __name__ == "__main__":
    main()
