"""``folio history`` and ``folio backfill``: price history for analysts."""

from __future__ import annotations

import json
from decimal import Decimal
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from folio.settings import Settings
from sinks.clickhouse.ranges import RANGES

# The ranges ClickHouse history knows, as a CLI choice (bad values: one-line error).
Range = StrEnum("Range", {name: name for name in RANGES})  # type: ignore[misc]


def _num(value: Decimal) -> str:
    """Stored at 12 decimal places; shown without the trailing zeros."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def history(
    ctx: typer.Context,
    symbol: str = typer.Argument(..., help="e.g. AAPL"),
    range_name: Range = typer.Option("1m", "--range", help="How far back."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines for machines."),
) -> None:
    """OHLCV at the granularity that fits the range (minutes for a day, days for a year,
    weeks or months beyond)."""
    from folio.store import open_store
    from sinks.clickhouse.history import history as read_history

    settings: Settings = ctx.obj
    with open_store(settings) as client:
        result = read_history(client, symbol, str(range_name.value))
    if as_json:
        for bar in result.bars:
            typer.echo(
                json.dumps(
                    {
                        "symbol": result.symbol,
                        "start": bar.start.isoformat(),
                        "open": _num(bar.open),
                        "high": _num(bar.high),
                        "low": _num(bar.low),
                        "close": _num(bar.close),
                        "volume": _num(bar.volume),
                        "trades": bar.trades,
                        "currency": bar.currency,
                    }
                )
            )
        return
    table = Table(
        "start",
        "open",
        "high",
        "low",
        "close",
        "volume",
        title=f"{result.symbol} {result.range_name} ({result.granularity} bars)",
    )
    for bar in result.bars:
        table.add_row(
            bar.start.strftime("%Y-%m-%d %H:%M"),
            *(_num(v) for v in (bar.open, bar.high, bar.low, bar.close, bar.volume)),
        )
    Console().print(table)
    if not result.bars:
        typer.echo(f"no bars for {result.symbol} in {result.range_name}")


def backfill(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="CSV: symbol,date,open,high,low,close[,volume]"
    ),
    currency: str = typer.Option("USD", help="Currency of the prices."),
) -> None:
    """Load daily bars straight into ClickHouse (years of history in seconds)."""
    from folio.store import open_store
    from sinks.clickhouse.backfill import backfill_daily_bars

    settings: Settings = ctx.obj
    with open_store(settings) as client:
        result = backfill_daily_bars(client, file, currency=currency)
    typer.echo(
        f"{result.rows:,} rows: {result.inserted:,} new, {result.corrected:,} corrected, "
        f"{result.unchanged:,} unchanged, {result.skipped_overlap:,} skipped "
        "(days already covered by minute candles)"
    )
