"""A seeded market simulator: geometric random walks with a U-shaped
intraday volume profile, and optional faults (duplicates, out-of-order and
late ticks, bad values, a provider going silent) so every failure path of the
ingest flow can be exercised on demand.

Pure and deterministic for a given seed and start time: tests and
benchmarks regenerate the exact same stream.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import orjson

from schemas.common import ms_to_datetime

_BAD_VALUES: tuple[object, ...] = ("NaN", "-5", "0", "Infinity", "1e400", "abc", None, True)


@dataclass(frozen=True)
class Faults:
    duplicate_rate: float = 0.0  # same tick sent twice
    out_of_order_rate: float = 0.0  # ts a little in the past (within lateness)
    late_rate: float = 0.0  # ts far in the past (beyond lateness)
    bad_rate: float = 0.0  # malformed or impossible values
    silent_provider: str | None = None  # this provider stops ...
    silent_after_ms: int = 0  # ... this long after the start ...
    silent_for_ms: int = 0  # ... for this long


@dataclass(frozen=True)
class SimConfig:
    symbols: int = 5
    ticks_per_s: float = 50.0
    seed: int = 42
    providers: tuple[str, ...] = ("alpha",)
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    volatility: float = 0.2  # annualised
    faults: Faults = Faults()


def symbol_names(count: int) -> list[str]:
    return [f"SYM{i:04d}" for i in range(count)]


class MarketSimulator:
    """Yields ``(key, value)`` Kafka records for ``market.ticks``."""

    def __init__(self, config: SimConfig) -> None:
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.symbols = symbol_names(config.symbols)
        self.prices = {s: 20.0 + self.rng.random() * 480.0 for s in self.symbols}
        self.step_ms = 1000.0 / config.ticks_per_s
        self.sequence = 0
        # sigma per tick of one symbol, from annual volatility (252 days x 6.5 h).
        ticks_per_symbol_year = config.ticks_per_s / max(1, config.symbols) * 252 * 6.5 * 3600
        self.sigma = config.volatility / math.sqrt(max(1.0, ticks_per_symbol_year))

    def ts_of(self, sequence: int) -> int:
        return self.cfg.start_ms + int(sequence * self.step_ms)

    def records(self, count: int) -> Iterator[tuple[str, bytes]]:
        for _ in range(count):
            yield from self.next_records()

    def next_records(self) -> list[tuple[str, bytes]]:
        """One simulated instant: usually one record, more with duplicates."""
        seq = self.sequence
        self.sequence += 1
        symbol = self.symbols[seq % len(self.symbols)]
        ts = self.ts_of(seq)
        price = self.prices[symbol] * math.exp(self.rng.gauss(0.0, self.sigma))
        self.prices[symbol] = price
        out = []
        for provider in self._live_providers(ts):
            doc = self._tick(symbol, price, ts, provider, seq)
            out.append((symbol, orjson.dumps(doc)))
            if self.rng.random() < self.cfg.faults.duplicate_rate:
                out.append((symbol, orjson.dumps(doc)))
        return out

    def _live_providers(self, ts: int) -> list[str]:
        f = self.cfg.faults
        elapsed = ts - self.cfg.start_ms
        silent = f.silent_provider is not None and f.silent_after_ms <= elapsed < (
            f.silent_after_ms + f.silent_for_ms
        )
        return [p for p in self.cfg.providers if not (silent and p == f.silent_provider)]

    def _tick(
        self, symbol: str, price: float, ts: int, provider: str, seq: int
    ) -> dict[str, object]:
        f = self.cfg.faults
        roll = self.rng.random()
        if roll < f.late_rate:
            ts -= 600_000
        elif roll < f.late_rate + f.out_of_order_rate:
            ts -= self.rng.randint(1, 2_000)
        doc: dict[str, object] = {
            "symbol": symbol,
            "price": str(Decimal(price).quantize(Decimal("0.0001"))),
            "ts": ms_to_datetime(ts).isoformat(timespec="milliseconds"),
            "provider": provider,
            "volume": self._volume(ts),
            "currency": "USD",
            "tick_id": f"{provider}-{seq}",
        }
        if self.rng.random() < f.bad_rate:
            doc["price"] = self.rng.choice(_BAD_VALUES)
        return doc

    def _volume(self, ts: int) -> int:
        # U-shaped intraday profile over a 6.5 h session: busy open and close.
        session_ms = 6.5 * 3600 * 1000
        x = (ts % session_ms) / session_ms
        profile = 0.5 + 2.0 * (x - 0.5) ** 2 * 4
        return max(1, int(self.rng.lognormvariate(4.0, 0.8) * profile))
