"""The one ``Settings`` object: read once at the entry point, passed down.

Every field can be set as ``FOLIO_<NAME>`` (nested: ``FOLIO_TOPICS__TICKS``).
Defaults point at the local stack that ``folio stack up`` starts.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_config: dict[str, str] = Field(
        default_factory=dict, description="Extra librdkafka settings (JSON), e.g. SASL"
    )
    kafka_local_port: int = 19092
    topics: TopicNames = Field(default_factory=TopicNames)
    topic_partitions: int = Field(default=0, ge=0, description="0: contract defaults")

    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    redis_prefix: str = "folio"
    postgres_dsn: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/folio")
    clickhouse_dsn: SecretStr | None = Field(
        default=None,
        description="chdb:///DIR (embedded, default HOME/clickhouse) or http://host:8123",
    )
    clickhouse_database: str = "folio"
    clickhouse_ticks_ttl_days: int = Field(default=0, ge=0, description="0 keeps ticks forever")

    window_live_ms: int = Field(default=1_000, gt=0)
    window_history_ms: int = Field(default=60_000, gt=0)
    candle_ms: int = Field(default=60_000, gt=0)
    allowed_lateness_ms: int = Field(default=5_000, ge=0, description="candles")
    valuation_lateness_ms: int = Field(default=500, ge=0, description="live valuations")
    max_future_ms: int = Field(default=60_000, ge=0)
    max_message_bytes: int = Field(default=64 * 1024, gt=0)
    dedup_horizon_ms: int = Field(default=600_000, gt=0)
    provider_priority: list[str] = Field(default_factory=lambda: ["alpha", "beta", "gamma"])
    provider_stale_ms: int = Field(default=5_000, gt=0)

    batch_size: int = Field(default=2_000, gt=0)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, description="0 disables /metrics")
    log_level: str = "INFO"

    fanout_host: str = "127.0.0.1"
    fanout_port: int = Field(default=8765, ge=0)
    fanout_conflation_ms: int = Field(default=250, ge=0)
    fanout_allowed_origins: list[str] = Field(default_factory=list, description="empty: any")
    jwt_secret: SecretStr = SecretStr("folio-dev-secret-change-me-in-production")
    jwt_public_key: SecretStr | None = Field(default=None, description="PEM, enables RS256")

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    def clickhouse_url(self) -> str:
        if self.clickhouse_dsn is not None:
            return self.clickhouse_dsn.get_secret_value()
        return f"chdb://{self.home / 'clickhouse'}"

    def kafka_client_config(self) -> dict[str, str]:
        return {"bootstrap.servers": self.kafka_bootstrap, **self.kafka_config}
