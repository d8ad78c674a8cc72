"""Names downstream teams code against: topics, Redis keys and channels, tables.

Topic names are the defaults of ``Settings.topics``; partition counts are part
of the contract because keys (symbol, portfolio) decide ordering.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from schemas.alerts import Alert, AlertRule
from schemas.dead_letter import DeadLetter
from schemas.market import Candle, ConsolidatedPrice, Tick
from schemas.transactions import Transaction
from schemas.valuation import Valuation


@dataclass(frozen=True)
class TopicSpec:
    default_name: str
    key: str
    partitions: int
    model: type[BaseModel] | None
    direction: str  # "input" or "output"
    doc: str


TOPICS: dict[str, TopicSpec] = {
    "ticks": TopicSpec("market.ticks", "symbol", 4, Tick, "input", "raw provider quotes"),
    "transactions": TopicSpec(
        "portfolio.transactions", "portfolio_id", 4, Transaction, "input", "ledger entries"
    ),
    "rules": TopicSpec("alerts.rules", "rule_id", 1, AlertRule, "input", "alert rule changes"),
    "prices": TopicSpec(
        "market.prices", "symbol", 4, ConsolidatedPrice, "output", "consolidated prices"
    ),
    "candles": TopicSpec("market.candles.1m", "symbol", 4, Candle, "output", "1-minute OHLCV"),
    "valuations": TopicSpec(
        "portfolio.valuations", "portfolio_id", 4, Valuation, "output", "windowed valuations"
    ),
    "alerts": TopicSpec("portfolio.alerts", "user_id", 4, Alert, "output", "fired alerts"),
    "dlq": TopicSpec(
        "pipeline.dlq", "source topic/partition/offset", 1, DeadLetter, "output", "rejections"
    ),
}


class RedisKeys:
    """Redis layout under a prefix (``folio`` by default; tests use their own)."""

    def __init__(self, prefix: str = "folio") -> None:
        self.prefix = prefix

    def price(self, symbol: str) -> str:
        return f"{self.prefix}:price:{symbol}"

    def price_channel(self, symbol: str) -> str:
        return f"{self.prefix}:prices:{symbol}"

    def valuation(self, portfolio_id: str) -> str:
        return f"{self.prefix}:valuation:{portfolio_id}"

    def portfolio_channel(self, portfolio_id: str) -> str:
        return f"{self.prefix}:portfolio:{portfolio_id}"

    def dashboard(self, user_id: str) -> str:
        return f"{self.prefix}:dashboard:{user_id}"

    def user_channel(self, user_id: str) -> str:
        return f"{self.prefix}:user:{user_id}"


POSTGRES_TABLES = (
    "portfolios",
    "transactions",
    "positions",
    "latest_valuations",
    "alert_rules",
    "alerts",
)
CLICKHOUSE_TABLES = (
    "ticks",
    "candles_1m",
    "candles_1h",
    "candles_1d",
    "candles_1w",
    "candles_1mo",
    "daily_bars",
    "rollup_rebuilds",
    "valuations",
    "alerts",
)
