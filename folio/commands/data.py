"""Analysts' entry points: ``folio sql`` and ``folio schemas export``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from folio.settings import Settings
from schemas.export import export_json_schemas

schemas_app = typer.Typer(help="The public data contract.", no_args_is_help=True)


@schemas_app.command("export")
def export(directory: Path = typer.Argument(..., help="Where to write *.schema.json")) -> None:
    """Write a JSON Schema for every message of the data contract."""
    for path in export_json_schemas(directory):
        typer.echo(str(path))


def sql(
    ctx: typer.Context,
    query: str = typer.Argument(..., help='A ClickHouse query, e.g. "SELECT count() FROM ticks"'),
    limit: int = typer.Option(1000, min=1, help="Rows to print at most."),
) -> None:
    """Run a query on the configured ClickHouse and print a table."""
    from folio.store import open_store

    settings: Settings = ctx.obj
    with open_store(settings) as client:
        columns, rows = client.query_rows(query)
    table = Table(*columns)
    for row in rows[:limit]:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    Console().print(table)
    if len(rows) > limit:
        typer.echo(f"({len(rows) - limit} more rows not shown)")
