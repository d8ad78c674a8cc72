"""Seeded portfolio activity for demos, tests and benchmarks: each portfolio
deposits cash and buys a few symbols, then trades and receives dividends now
and then. Quantities and prices are exact decimals; ids are deterministic."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import orjson

from connectors.simulator import symbol_names
from schemas.common import ms_to_datetime


@dataclass(frozen=True)
class PortfolioSimConfig:
    portfolios: int = 10
    symbols: int = 20
    positions: int = 5  # symbols bought per portfolio at the start
    users: int = 0  # 0: one user per portfolio
    seed: int = 11
    start_ms: int = 1_767_225_600_000


class PortfolioSimulator:
    """Yields ``(portfolio_id, value)`` records for ``portfolio.transactions``."""

    def __init__(self, config: PortfolioSimConfig) -> None:
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.symbols = symbol_names(config.symbols)
        self.holdings: dict[str, dict[str, Decimal]] = {}
        self.counter = 0

    def portfolio_id(self, index: int) -> str:
        return f"pf-{index:05d}"

    def user_id(self, index: int) -> str:
        users = self.cfg.users or self.cfg.portfolios
        return f"user-{index % users:05d}"

    def _txn(self, index: int, kind: str, ms: int, **fields: object) -> tuple[str, bytes]:
        self.counter += 1
        pid = self.portfolio_id(index)
        doc = {
            "txn_id": f"{pid}-{self.counter:08d}",
            "portfolio_id": pid,
            "user_id": self.user_id(index),
            "type": kind,
            "executed_at": ms_to_datetime(ms).isoformat(timespec="milliseconds"),
            **{k: str(v) for k, v in fields.items()},
        }
        return pid, orjson.dumps(doc)

    def opening(self, prices: dict[str, float] | None = None) -> Iterator[tuple[str, bytes]]:
        """A deposit and a few buys per portfolio, at ``start_ms``."""
        for index in range(self.cfg.portfolios):
            ms = self.cfg.start_ms + index % 1000
            yield self._txn(index, "DEPOSIT", ms, amount=Decimal(100_000))
            chosen = self.rng.sample(self.symbols, min(self.cfg.positions, len(self.symbols)))
            book = self.holdings.setdefault(self.portfolio_id(index), {})
            for symbol in chosen:
                quantity = Decimal(self.rng.randint(1, 50))
                price = Decimal(str(round((prices or {}).get(symbol, 100.0), 2)))
                book[symbol] = book.get(symbol, Decimal(0)) + quantity
                yield self._txn(
                    index,
                    "BUY",
                    ms + 1,
                    symbol=symbol,
                    quantity=quantity,
                    price=price,
                    fees=Decimal("1.00"),
                )

    def activity(self, ms: int) -> tuple[str, bytes]:
        """One random trade or dividend at ``ms``."""
        index = self.rng.randrange(self.cfg.portfolios)
        book = self.holdings.setdefault(self.portfolio_id(index), {})
        held = [s for s, q in book.items() if q > 0]
        roll = self.rng.random()
        if held and roll < 0.3:
            symbol = self.rng.choice(held)
            quantity = min(book[symbol], Decimal(self.rng.randint(1, 10)))
            book[symbol] -= quantity
            return self._txn(
                index,
                "SELL",
                ms,
                symbol=symbol,
                quantity=quantity,
                price=Decimal("100.00"),
                fees=Decimal("1.00"),
            )
        if held and roll < 0.5:
            return self._txn(
                index,
                "DIVIDEND",
                ms,
                symbol=self.rng.choice(held),
                amount=Decimal(self.rng.randint(5, 200)),
            )
        symbol = self.rng.choice(self.symbols)
        quantity = Decimal(self.rng.randint(1, 10))
        book[symbol] = book.get(symbol, Decimal(0)) + quantity
        return self._txn(
            index,
            "BUY",
            ms,
            symbol=symbol,
            quantity=quantity,
            price=Decimal("100.00"),
            fees=Decimal("1.00"),
        )
