"""Alert engine throughput, in process: N active rules across M symbols, K
consolidated prices through ``RuleBook.on_price`` (plus a watermark every
1,000 prices for the feed_stale rules).

    python -m benchmarks.alerts_bench [--rules 100000] [--symbols 1000]
                                      [--observations 500000] [--seed 1]

Rule mix per symbol: 40 % price_above, 40 % price_below (thresholds within
+/-10 % of the start price, hysteresis 0.5), 15 % pct_move (1-5 % over 60 s
or 5 min), 5 % feed_stale (30-120 s). A third of the rules have a 60 s
cooldown. Prices: a random walk per symbol (+/-0.5 % a step), one
observation every 2 ms of event time on a random symbol. Inputs are built
before the clock starts; the timed loop is only the engine. Prints a
markdown table.
"""

from __future__ import annotations

import argparse
import pickle
import random
import statistics
import time
from decimal import Decimal

from flows.alerts import RuleBook
from schemas.alerts import AlertRule

T0 = 1_767_225_600_000
START = Decimal(100)


def make_rules(count: int, symbols: list[str], rng: random.Random) -> list[AlertRule]:
    rules = []
    for n in range(count):
        symbol = symbols[n % len(symbols)]
        roll = rng.random()
        base: dict[str, object] = {"rule_id": f"r{n}", "user_id": f"u{n % 5_000}"}
        base["symbol"] = symbol
        base["cooldown_ms"] = 60_000 if n % 3 == 0 else 0
        if roll < 0.8:
            kind = "price_above" if roll < 0.4 else "price_below"
            threshold = Decimal(rng.randint(9_000, 11_000)) / 100
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
    count: int, symbols: list[str], rng: random.Random
) -> list[tuple[str, Decimal, int]]:
    prices = dict.fromkeys(symbols, START)
    out = []
    step = Decimal("0.005")
    for i in range(count):
        symbol = symbols[rng.randrange(len(symbols))]
        move = Decimal(rng.randint(-100, 100)) / 100 * step
        price = max(Decimal("0.01"), (prices[symbol] * (1 + move)).quantize(Decimal("0.01")))
        prices[symbol] = price
        out.append((symbol, price, T0 + 2 * (i + 1)))
    return out


def run(rules_n: int, symbols_n: int, observations: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    symbols = [f"S{n:04d}" for n in range(symbols_n)]
    rules = make_rules(rules_n, symbols, rng)
    prices = make_prices(observations, symbols, rng)

    book = RuleBook()
    started = time.perf_counter()
    for rule in rules:
        book.upsert(rule)
    upsert_s = time.perf_counter() - started

    latencies: list[int] = []
    alerts = 0
    clock = time.perf_counter_ns
    started = time.perf_counter()
    for i, (symbol, price, ts) in enumerate(prices):
        begin = clock()
        alerts += len(book.on_price(symbol, price, ts))
        if i % 1_000 == 999:
            alerts += len(book.on_watermark(ts))
        latencies.append(clock() - begin)
    elapsed = time.perf_counter() - started

    started = time.perf_counter()
    snapshot = pickle.dumps(book, protocol=pickle.HIGHEST_PROTOCOL)
    pickle_s = time.perf_counter() - started
    started = time.perf_counter()
    pickle.loads(snapshot)
    unpickle_s = time.perf_counter() - started

    latencies.sort()
    stats = book.stats()
    return [
        ("rules (active)", f"{rules_n:,}"),
        ("symbols", f"{symbols_n:,}"),
        ("rules per symbol", f"{rules_n / symbols_n:,.0f}"),
        ("price observations", f"{observations:,}"),
        ("upsert all rules", f"{upsert_s:.2f} s ({upsert_s / rules_n * 1e6:.1f} µs/rule)"),
        ("engine time", f"{elapsed:.2f} s"),
        ("**observations/s**", f"**{observations / elapsed:,.0f}**"),
        ("mean per observation", f"{elapsed / observations * 1e6:.1f} µs"),
        ("p50 / p99 / max per observation", _percentiles(latencies)),
        ("alerts fired", f"{alerts:,}"),
        ("crossings swallowed by cooldown", f"{stats['suppressed']:,}"),
        ("rule evaluations per observation", f"{stats['evaluations'] / observations:.2f}"),
        (
            "snapshot (pickle)",
            f"{len(snapshot) / 1e6:.1f} MB, {pickle_s:.2f} s dump, {unpickle_s:.2f} s load",
        ),
    ]


def _percentiles(latencies: list[int]) -> str:
    p50 = statistics.median_low(latencies) / 1_000
    p99 = latencies[int(len(latencies) * 0.99)] / 1_000
    return f"{p50:.1f} / {p99:.1f} / {latencies[-1] / 1_000:.0f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=100_000)
    parser.add_argument("--symbols", type=int, default=1_000)
    parser.add_argument("--observations", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = run(args.rules, args.symbols, args.observations, args.seed)
    print("| metric | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
