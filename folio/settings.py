"""The one ``Settings`` object: read once at the entry point, passed down.

Every field can be set as ``FOLIO_<NAME>`` (nested: ``FOLIO_TOPICS__TICKS``).
Defaults point at the local stack that ``folio stack up`` starts.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.common import normalize_symbol
from schemas.topics import TOPICS


class TopicNames(BaseModel):
    ticks: str = TOPICS["ticks"].default_name
    transactions: str = TOPICS["transactions"].default_name
    rules: str = TOPICS["rules"].default_name
    prices: str = TOPICS["prices"].default_name
    candles: str = TOPICS["candles"].default_name
    valuations: str = TOPICS["valuations"].default_name
    alerts: str = TOPICS["alerts"].default_name
    dlq: str = TOPICS["dlq"].default_name

    def all(self) -> dict[str, str]:
        """Logical name -> actual topic name."""
        return self.model_dump()


def _default_home() -> Path:
    return Path.cwd() / ".folio"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FOLIO_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    home: Path = Field(default_factory=_default_home, description="State, logs, chDB data")

    kafka_bootstrap: str = Field(
        default="127.0.0.1:19092", description="Kafka bootstrap servers (host:port,...)"
    )
    kafka_config: dict[str, str] = Field(
        default_factory=dict, description="Extra librdkafka settings (JSON), e.g. SASL"
    )
    topics: TopicNames = Field(
        default_factory=TopicNames, description="Topic names, e.g. FOLIO_TOPICS__TICKS"
    )
    topic_partitions: int = Field(
        default=0, ge=0, description="Partitions of every topic created (0: contract defaults)"
    )

    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"), description="Redis URL"
    )
    redis_prefix: str = Field(default="folio", description="Prefix of every Redis key and channel")
    postgres_dsn: SecretStr = Field(
        default=SecretStr("postgresql://postgres@127.0.0.1:5432/folio"),
        description="Postgres DSN (the database is created by `folio migrate`)",
    )
    clickhouse_dsn: SecretStr | None = Field(
        default=None,
        description="chdb:///DIR (embedded, default HOME/clickhouse) or http://host:8123",
    )
    clickhouse_database: str = Field(default="folio", description="ClickHouse database")
    clickhouse_ticks_ttl_days: int = Field(default=0, ge=0, description="0 keeps ticks forever")

    window_live_ms: int = Field(default=1_000, gt=0, description="Live valuation window")
    window_history_ms: int = Field(
        default=60_000, gt=0, description="History valuation window (ClickHouse)"
    )
    candle_ms: int = Field(default=60_000, gt=0, description="Candle length")
    allowed_lateness_ms: int = Field(
        default=5_000, ge=0, description="How late a tick may be and still count in its candle"
    )
    valuation_lateness_ms: int = Field(
        default=500, ge=0, description="Watermark delay of live valuations (latency vs. late data)"
    )
    max_future_ms: int = Field(
        default=60_000, ge=0, description="Ticks further in the future are rejected"
    )
    max_message_bytes: int = Field(
        default=64 * 1024, gt=0, description="Larger messages go to the DLQ as oversize"
    )
    dedup_horizon_ms: int = Field(
        default=600_000, gt=0, description="Event-time horizon of tick de-duplication"
    )
    provider_priority: list[str] = Field(
        default_factory=lambda: ["alpha", "beta", "gamma"],
        description="Providers, most preferred first (JSON list)",
    )
    benchmark: str = Field(
        default="SPY", description="Benchmark symbol of the dashboard's performance card"
    )
    provider_stale_ms: int = Field(
        default=5_000, gt=0, description="Silence after which the next provider takes over"
    )

    batch_size: int = Field(default=2_000, gt=0, description="Kafka messages per poll")
    metrics_host: str = Field(default="127.0.0.1", description="Bind address of /metrics")
    metrics_port: int = Field(default=9464, ge=0, description="0 disables /metrics")
    log_level: str = Field(default="INFO", description="Log level (JSON logs on stderr)")

    fanout_host: str = Field(default="127.0.0.1", description="Fan-out server bind address")
    fanout_port: int = Field(default=8765, ge=0, description="Fan-out server port")
    fanout_conflation_ms: int = Field(
        default=250, ge=0, description="At most one message per channel per client per interval"
    )
    fanout_allowed_origins: list[str] = Field(
        default_factory=list, description="Websocket Origin allowlist (JSON list; empty: any)"
    )
    jwt_secret: SecretStr = Field(
        default=SecretStr("folio-dev-secret-change-me-in-production"),
        description="HS256 secret of client tokens",
    )
    jwt_public_key: SecretStr | None = Field(default=None, description="PEM, enables RS256")

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("benchmark")
    @classmethod
    def _benchmark_symbol(cls, value: str) -> str:
        return normalize_symbol(value, "benchmark")

    @model_validator(mode="after")
    def _dedup_horizon_covers_candles(self) -> Settings:
        # Ticks behind the horizon are dead-lettered as late (flows.ingest.dedup).
        if self.dedup_horizon_ms < self.candle_ms + self.allowed_lateness_ms:
            raise ValueError(
                "dedup_horizon_ms must be at least candle_ms + allowed_lateness_ms"
                f" ({self.candle_ms + self.allowed_lateness_ms})"
            )
        return self

    def clickhouse_url(self) -> str:
        if self.clickhouse_dsn is not None:
            return self.clickhouse_dsn.get_secret_value()
        return f"chdb://{self.home / 'clickhouse'}"

    def kafka_client_config(self) -> dict[str, str]:
        return {"bootstrap.servers": self.kafka_bootstrap, **self.kafka_config}
