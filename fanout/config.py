"""Fan-out server configuration: explicit values, never read from the
environment here (``folio`` maps its Settings onto this dataclass)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FanoutConfig:
    """Everything the websocket/HTTP fan-out needs.

    ``port=0`` binds an ephemeral port (see ``ServerReady.port``).
    ``allowed_origins`` empty allows every Origin; otherwise browsers must send
    one of them (clients without an Origin header, i.e. non-browsers, pass).
    """

    host: str
    port: int
    redis_url: str
    redis_prefix: str
    postgres_dsn: str
    jwt_secret: str
    jwt_public_key: str | None = None
    conflation_ms: int = 250
    max_frame_bytes: int = 64 * 1024
    max_subscriptions: int = 200
    max_connections_per_user: int = 10
    max_messages_per_s: float = 20.0
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)
    blocked_client_timeout_s: float = 10.0
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    auth_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    # A keep-alive HTTP connection without a complete request for this long is closed.
    http_idle_timeout_s: float = 15.0
    # Connections in the HTTP phase (kept alive or not yet upgraded); beyond it a new one is
    # answered 503 and closed. Keep-alive holds each for up to http_idle_timeout_s after its
    # last answer, and max_connections_per_user only covers authenticated websockets.
    max_http_connections: int = 10_000
    ownership_cache_s: float = 5.0
    max_pending_alerts: int = 100
    jwt_leeway_s: float = 0.0
    compression: bool = True
    # zlib level of permessage-deflate: 1 costs half the CPU of zlib's default (6)
    # for ~25% more bytes on price JSON (still ~10x smaller than uncompressed).
    compression_level: int = 1
    max_http_symbols: int = 100
    redis_client_name: str = "folio-fanout"  # visible in CLIENT LIST
    redis_max_connections: int = 32  # snapshot reads wait for one beyond this

    def __post_init__(self) -> None:
        if not self.jwt_secret and not self.jwt_public_key:
            raise ValueError("jwt_secret (or jwt_public_key) is required")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, got {self.port}")
        positive = {
            "max_frame_bytes": self.max_frame_bytes,
            "max_subscriptions": self.max_subscriptions,
            "max_connections_per_user": self.max_connections_per_user,
            "max_messages_per_s": self.max_messages_per_s,
            "blocked_client_timeout_s": self.blocked_client_timeout_s,
            "auth_timeout_s": self.auth_timeout_s,
            "http_idle_timeout_s": self.http_idle_timeout_s,
            "max_http_connections": self.max_http_connections,
            "max_pending_alerts": self.max_pending_alerts,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if not 0 <= self.compression_level <= 9:
            raise ValueError(f"compression_level must be 0-9, got {self.compression_level}")
        if self.conflation_ms < 0:
            raise ValueError(f"conflation_ms must be >= 0, got {self.conflation_ms}")

    @property
    def conflation_s(self) -> float:
        return self.conflation_ms / 1000.0
