"""A fixed, seeded input for recovery and scale-out runs: ticks from the
market simulator (two providers, a failover, duplicates, out-of-order, late
and bad ticks) and transactions of every kind (BUY, SELL, DIVIDEND, DEPOSIT,
WITHDRAWAL, FEE, SPLIT, plus redelivered ids, oversells and splits of
unheld symbols that the ledger rejects), and a few alert rules.

Deterministic: the same ``Workload`` always yields the same bytes, so a
crash-free run and a crashed run see exactly the same input.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from decimal import Decimal

import orjson

from connectors.simulator import Faults, MarketSimulator, SimConfig, symbol_names
from schemas.common import ms_to_datetime

Record = tuple[str, bytes]
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: replayed data, far behind the wall clock

# Relative weights of transaction kinds after each portfolio's opening deposit.
_KINDS = (
    ("BUY", 30),
    ("SELL", 16),
    ("DIVIDEND", 10),
    ("DEPOSIT", 8),
    ("WITHDRAWAL", 8),
    ("FEE", 8),
    ("SPLIT", 4),
    ("OVERSELL", 1),  # a SELL of more than is held: dead-lettered as oversell
    ("SPLIT_UNHELD", 1),  # dead-lettered as split_without_position
    ("REDELIVERY", 2),  # an earlier transaction sent again: applied once
)


@dataclass(frozen=True)
class Workload:
    ticks: int = 20_000  # tick records (duplicates and bad ones included)
    txns: int = 500  # transaction records
    symbols: int = 20
    portfolios: int = 40
    ticks_per_s: float = 400.0  # event-time density of the simulated feed
    seed: int = 7

    @property
    def span_ms(self) -> int:
        """Event time covered by the ticks, about (two providers send each
        price; the transactions spread over it)."""
        return int(self.ticks / (2 * self.ticks_per_s) * 1000)


def tick_records(w: Workload) -> list[Record]:
    faults = Faults(
        duplicate_rate=0.01,
        out_of_order_rate=0.01,
        late_rate=0.001,
        bad_rate=0.002,
        silent_provider="alpha",
        silent_after_ms=w.span_ms // 3,
        silent_for_ms=min(20_000, w.span_ms // 6),
    )
    sim = MarketSimulator(
        SimConfig(
            symbols=w.symbols,
            ticks_per_s=w.ticks_per_s,
            seed=w.seed,
            providers=("alpha", "beta"),
            start_ms=START_MS,
            faults=faults,
        )
    )
    return list(itertools.islice(sim.records(w.ticks), w.ticks))


def _weighted(rng: random.Random) -> str:
    return rng.choices([k for k, _ in _KINDS], weights=[n for _, n in _KINDS])[0]


class _Book:
    """What the generator believes each portfolio holds (to make valid sells)."""

    def __init__(self, w: Workload, rng: random.Random) -> None:
        self.w = w
        self.rng = rng
        self.symbols = symbol_names(w.symbols)
        self.held: dict[str, dict[str, Decimal]] = {}
        self.sent: list[Record] = []
        self.count = 0

    def pid(self, index: int) -> str:
        return f"pf-{index:04d}"

    def txn(self, index: int, kind: str, ms: int, **fields: object) -> Record:
        self.count += 1
        pid = self.pid(index)
        doc = {
            "txn_id": f"{pid}-{self.count:07d}",
            "portfolio_id": pid,
            "user_id": f"user-{index % max(1, self.w.portfolios // 2):04d}",
            "type": kind,
            "executed_at": ms_to_datetime(ms).isoformat(timespec="milliseconds"),
            **{k: str(v) for k, v in fields.items()},
        }
        record = (pid, orjson.dumps(doc))
        self.sent.append(record)
        return record

    def money(self, low: int, high: int) -> Decimal:
        return Decimal(self.rng.randint(low * 100, high * 100)) / 100

    def event(self, ms: int) -> Record:
        index = self.rng.randrange(self.w.portfolios)
        book = self.held.setdefault(self.pid(index), {})
        held = sorted(s for s, q in book.items() if q > 0)
        kind = _weighted(self.rng)
        if kind in ("SELL", "DIVIDEND", "SPLIT") and not held:
            kind = "BUY"
        if kind == "REDELIVERY" and self.sent:
            return self.rng.choice(self.sent)
        if kind in ("BUY", "REDELIVERY"):
            symbol = self.rng.choice(self.symbols)
            quantity = Decimal(self.rng.randint(1, 20))
            book[symbol] = book.get(symbol, Decimal(0)) + quantity
            return self.txn(
                index, "BUY", ms, symbol=symbol, quantity=quantity,
                price=self.money(20, 500), fees=self.money(0, 5),
            )  # fmt: skip
        if kind == "SELL":
            symbol = self.rng.choice(held)
            quantity = min(book[symbol], Decimal(self.rng.randint(1, 10)))
            book[symbol] -= quantity
            return self.txn(
                index, "SELL", ms, symbol=symbol, quantity=quantity,
                price=self.money(20, 500), fees=self.money(0, 5),
            )  # fmt: skip
        if kind == "OVERSELL":
            symbol = self.rng.choice(self.symbols)
            quantity = book.get(symbol, Decimal(0)) + 1_000
            return self.txn(index, "SELL", ms, symbol=symbol, quantity=quantity, price=100)
        if kind == "DIVIDEND":
            return self.txn(
                index, "DIVIDEND", ms, symbol=self.rng.choice(held), amount=self.money(1, 200)
            )
        if kind == "SPLIT":
            symbol = self.rng.choice(held)
            ratio = self.rng.choice((Decimal(2), Decimal(3), Decimal("1.5")))
            book[symbol] *= ratio
            return self.txn(index, "SPLIT", ms, symbol=symbol, ratio=ratio)
        if kind == "SPLIT_UNHELD":
            unheld = [s for s in self.symbols if book.get(s, Decimal(0)) == 0]
            symbol = unheld[0] if unheld else "NOPE"
            return self.txn(index, "SPLIT", ms, symbol=symbol, ratio=2)
        return self.txn(index, kind, ms, amount=self.money(1, 2_000))


def transaction_records(w: Workload) -> list[Record]:
    """One opening deposit per portfolio, then events spread evenly over the
    ticks' event time, each jittered by up to 300 ms (out of order, within
    the valuation lateness)."""
    rng = random.Random(w.seed * 7919)
    book = _Book(w, rng)
    out = [
        book.txn(i, "DEPOSIT", START_MS + i, amount=Decimal(250_000))
        for i in range(min(w.portfolios, w.txns))
    ]
    events = w.txns - len(out)
    for k in range(events):
        ms = START_MS + 1_000 + (w.span_ms - 2_000) * k // max(1, events)
        out.append(book.event(ms + rng.randint(-300, 300)))
    return out


def rule_records(w: Workload) -> list[Record]:
    """A few rules of several kinds (no ``feed_stale``: it watches the wall clock)."""
    symbols = symbol_names(w.symbols)
    rules: list[dict[str, object]] = []
    for i, symbol in enumerate(symbols[:4]):
        kind = "price_above" if i % 2 == 0 else "price_below"
        rules.append({"rule_id": f"r-px-{i}", "user_id": "user-0000", "symbol": symbol,
                      "kind": kind, "threshold": "100", "hysteresis": "1"})  # fmt: skip
    for i in range(min(4, w.portfolios)):
        pid = f"pf-{i:04d}"
        user = f"user-{i % max(1, w.portfolios // 2):04d}"
        rules.append({"rule_id": f"r-conc-{i}", "user_id": user, "portfolio_id": pid,
                      "kind": "concentration", "threshold": "20", "hysteresis": "2"})  # fmt: skip
        rules.append({"rule_id": f"r-div-{i}", "user_id": user, "portfolio_id": pid,
                      "kind": "dividend_received", "threshold": "0"})  # fmt: skip
    return [(str(r["rule_id"]), orjson.dumps(r)) for r in rules]
