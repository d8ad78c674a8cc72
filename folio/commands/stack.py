"""``folio stack up|down|status|env``."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from deploy import stack as local_stack
from folio.settings import Settings

app = typer.Typer(
    help="Start, stop and show the local stack (Kafka, Redis, Postgres, ClickHouse).",
    no_args_is_help=True,
)


def stack_config(settings: Settings) -> local_stack.StackConfig:
    return local_stack.StackConfig(
        home=settings.home,
        kafka_bootstrap=settings.kafka_bootstrap,
        redis_url=settings.redis_url.get_secret_value(),
        postgres_dsn=settings.postgres_dsn.get_secret_value(),
        clickhouse_dsn=settings.clickhouse_url(),
    )


@app.command("up")
def up(ctx: typer.Context) -> None:
    """Start what is not already running; safe to repeat."""
    state = local_stack.up(stack_config(ctx.obj))
    _print_status(ctx.obj)
    if any(c.mode == "embedded" and c.pid for c in state.components.values()):
        typer.echo(
            "Embedded services started: run `eval $(folio stack env)` to point this shell at them."
        )


@app.command("down")
def down(ctx: typer.Context) -> None:
    """Stop exactly what `up` started (by PID)."""
    stopped = local_stack.down(ctx.obj.home)
    typer.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@app.command("status")
def status(ctx: typer.Context) -> None:
    """Show each component, how it runs, and whether it is up."""
    _print_status(ctx.obj)


@app.command("env")
def env(ctx: typer.Context) -> None:
    """Print `export FOLIO_...=...` lines for this shell."""
    state = local_stack.StackState.load(ctx.obj.home)
    for line in local_stack.env_lines(state):
        typer.echo(line)


def _print_status(settings: Settings) -> None:
    rows = local_stack.status(settings.home)
    if not rows:
        typer.echo("stack is down (no state in " + str(settings.home) + ")")
        return
    table = Table("component", "mode", "url", "running")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
