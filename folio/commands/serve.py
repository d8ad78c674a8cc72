"""``folio serve`` (the websocket fan-out) and ``folio token`` (dev tokens)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from fanout.auth import mint_token
from fanout.config import FanoutConfig
from folio.settings import Settings


def fanout_config(settings: Settings, port: int | None = None) -> FanoutConfig:
    public_key = settings.jwt_public_key
    return FanoutConfig(
        host=settings.fanout_host,
        port=settings.fanout_port if port is None else port,
        redis_url=settings.redis_url.get_secret_value(),
        redis_prefix=settings.redis_prefix,
        postgres_dsn=settings.postgres_dsn.get_secret_value(),
        jwt_secret=settings.jwt_secret.get_secret_value(),
        jwt_public_key=None if public_key is None else public_key.get_secret_value(),
        conflation_ms=settings.fanout_conflation_ms,
        allowed_origins=tuple(settings.fanout_allowed_origins),
    )


def history_reader(client: Any) -> Callable[[str, str], list[dict[str, Any]]]:
    """``/v1/history`` over an open ClickHouse client."""
    from sinks.clickhouse.history import history

    def read(symbol: str, range_name: str) -> list[dict[str, Any]]:
        result = history(client, symbol, range_name)
        return [
            {
                "start": bar.start.isoformat(),
                "open": format(bar.open, "f"),
                "high": format(bar.high, "f"),
                "low": format(bar.low, "f"),
                "close": format(bar.close, "f"),
                "volume": format(bar.volume, "f"),
                "trades": bar.trades,
                "currency": bar.currency,
            }
            for bar in result.bars
        ]

    return read


def serve(
    ctx: typer.Context,
    port: int | None = typer.Option(None, min=0, max=65535, help="Default: FOLIO_FANOUT_PORT."),
) -> None:
    """Run the websocket fan-out server (live prices, valuations, alerts, dashboard)."""
    from fanout.server import serve_forever

    settings: Settings = ctx.obj
    config = fanout_config(settings, port)
    if settings.clickhouse_url().startswith("chdb://"):
        typer.echo(
            "note: /v1/history is off: the embedded ClickHouse directory belongs to one "
            "process; run `folio demo`, or set FOLIO_CLICKHOUSE_DSN to a ClickHouse server",
            err=True,
        )
        serve_forever(config, None)
        return
    from folio.store import open_store

    with open_store(settings) as client:
        typer.echo(f"serving on http://{config.host}:{config.port}/", err=True)
        serve_forever(config, history_reader(client))


def token(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., help="The user the token signs in as."),
    ttl: int = typer.Option(3600, min=1, max=30 * 86400, help="Lifetime in seconds."),
) -> None:
    """Mint a development token (HS256, FOLIO_JWT_SECRET)."""
    settings: Settings = ctx.obj
    typer.echo(mint_token(settings.jwt_secret.get_secret_value(), user_id, ttl))
